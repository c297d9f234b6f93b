package mtls

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"

	"github.com/ztbank/ztbank/devkit/localspire"
	"github.com/ztbank/ztbank/libs/identity"
	"github.com/ztbank/ztbank/libs/transport"
	"github.com/ztbank/ztbank/tests/internal/load"
	"github.com/ztbank/ztbank/tools/devstack/stack"
)

// TestCallMatrix checks every ordered pair (caller workload, running service): allowed
// edges get through and the service sees the caller's ID; every other pair is refused in
// the TLS handshake, before any HTTP is exchanged.
func TestCallMatrix(t *testing.T) {
	td := st.Topo.TrustDomain
	callers := map[string]spiffeid.ID{}
	for _, w := range st.Topo.Workloads {
		callers[w.Name] = w.ID
	}
	// A genuine SVID of this trust domain for a workload the topology does not know.
	callers["rogue (not in topology)"] = spiffeid.RequireFromPath(td, "/ns/bank-a/sa/rogue")

	allowed, refused := 0, 0
	for name, id := range callers {
		cl := mint(t, id)
		for target, svc := range st.Services {
			before := metric(t, svc, "ztbank_mtls_handshake_failures_total", `{reason="not_allowed"}`)
			h, status, err := getJSON(cl.httpClient(svc.Workload.ID), "https://"+svc.Listen+"/internal/whoami")
			if st.Topo.MayCall(name, target) {
				allowed++
				if err != nil || status != http.StatusOK {
					t.Errorf("%s → %s: allowed edge failed: status %d, err %v", name, target, status, err)
					continue
				}
				if h.Caller != id.String() {
					t.Errorf("%s → %s: service saw caller %q, want %q", name, target, h.Caller, id)
				}
				continue
			}
			refused++
			if err == nil {
				t.Errorf("%s → %s: got HTTP %d, want refusal in the TLS handshake", name, target, status)
				continue
			}
			if !strings.Contains(err.Error(), "tls:") {
				t.Errorf("%s → %s: refused, but not by TLS: %v", name, target, err)
			}
			if after := metric(t, svc, "ztbank_mtls_handshake_failures_total", `{reason="not_allowed"}`); after != before+1 {
				t.Errorf("%s → %s: not_allowed handshake failures went %v → %v, want +1", name, target, before, after)
			}
		}
	}
	wantAllowed := 0
	for _, e := range st.Topo.Edges() {
		if st.Services[e[1]] != nil {
			wantAllowed++
		}
	}
	if wantAllowed == 0 || allowed != wantAllowed || refused != len(callers)*len(st.Services)-wantAllowed {
		t.Errorf("checked %d allowed and %d refused pairs; want %d and %d", allowed, refused,
			wantAllowed, len(callers)*len(st.Services)-wantAllowed)
	}
	t.Logf("checked %d allowed and %d refused pairs", allowed, refused)
}

func TestRefusesClientsWithoutTrustedSVID(t *testing.T) {
	edge, _ := st.Topo.Workload("edge")
	gw := st.Services["bank-a/gateway"]
	verifier := mint(t, spiffeid.RequireFromPath(st.Topo.TrustDomain, "/test/verifier"))

	noCert := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true,
		TLSClientConfig: tlsconfig.TLSClientConfig(verifier.bundle, tlsconfig.AuthorizeID(gw.Workload.ID))}}
	for _, tc := range []struct {
		name   string
		client *http.Client
	}{
		{"no client certificate", noCert},
		{"certificate from another CA claiming the edge's ID", foreignClient(t, edge.ID, gw.Workload.ID)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, status, err := getJSON(tc.client, "https://"+gw.Listen+"/internal/whoami")
			if err == nil {
				t.Fatalf("got HTTP %d, want a TLS refusal", status)
			}
			if !strings.Contains(err.Error(), "tls:") {
				t.Errorf("refused, but not by TLS: %v", err)
			}
		})
	}
}

// TestChainAcrossAllowedEdges drives edge → gateway → user → account (and the bank-b
// chain): every hop authenticates the previous one with agent-issued SVIDs.
func TestChainAcrossAllowedEdges(t *testing.T) {
	edge, _ := st.Topo.Workload("edge")
	cl := mint(t, edge.ID)
	for _, gwName := range []string{"bank-a/gateway", "bank-b/gateway"} {
		gw := st.Services[gwName]
		h, status, err := getJSON(cl.httpClient(gw.Workload.ID), "https://"+gw.Listen+"/internal/chain")
		if err != nil || status != http.StatusOK {
			t.Fatalf("%s chain: status %d, err %v", gwName, status, err)
		}
		if errs := chainErrors(h); len(errs) > 0 {
			t.Errorf("%s chain hops failed: %v", gwName, errs)
		}
		var walk func(h hop, from string)
		hops := 0
		walk = func(h hop, from string) {
			hops++
			w, _ := st.Topo.Workload(h.Workload)
			f, _ := st.Topo.Workload(from)
			if h.Caller != f.ID.String() {
				t.Errorf("%s saw caller %s, want %s", h.Workload, h.Caller, f.ID)
			}
			for _, n := range h.Next {
				walk(n, w.Name)
			}
		}
		walk(h, "edge")
		if hops < 3 {
			t.Errorf("%s chain covered %d hops, want at least 3", gwName, hops)
		}
	}
}

// chainOnce sends one /internal/chain request and reports any failure, at any hop.
func chainOnce(c *http.Client, url string) error {
	h, status, err := getJSON(c, url)
	switch {
	case err != nil:
		return err
	case status != http.StatusOK:
		return fmt.Errorf("status %d", status)
	case len(chainErrors(h)) > 0:
		return fmt.Errorf("hops failed: %v", chainErrors(h))
	}
	return nil
}

// clientsForLoad returns one HTTP client per load client, each with its own connection pool
// built from cfg, and a function that drops a client's idle connections so its next request
// makes a fresh handshake.
func clientsForLoad(cfg func() *tls.Config) ([]*http.Client, func(c int)) {
	clients := make([]*http.Client, load.Clients)
	transports := make([]*http.Transport, load.Clients)
	for i := range clients {
		transports[i] = &http.Transport{TLSClientConfig: cfg(), MaxIdleConnsPerHost: 4}
		clients[i] = &http.Client{Timeout: 10 * time.Second, Transport: transports[i]}
	}
	return clients, func(c int) { transports[c].CloseIdleConnections() }
}

// handshakeEvery is how often a load client drops its connections: every such request is a
// fresh mTLS handshake with the SVIDs current at that moment, the others reuse pooled
// connections as the services themselves do.
const handshakeEvery = 25

// TestRotationWithoutFailedRequests registers this test binary as the edge, so its own SVID
// comes from the agent and rotates like a service's, then drives load.Clients concurrent
// clients through the bank-a gateway chain (gateway → user → account) across two rotations
// of every SVID involved (60 s SVIDs, renewed at half life). Zero requests may fail, the run
// must reach load.MinRate, and both sides must have presented at least three SVIDs in fresh
// handshakes.
func TestRotationWithoutFailedRequests(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	edge, _ := st.Topo.Workload("edge")
	if err := st.Spire.Register(ctx, localspire.Entry{ID: edge.ID, BinaryPath: exe, TTL: svidTTL}); err != nil {
		t.Fatal(err)
	}
	src, err := identity.New(ctx, identity.WithAddr("unix://"+st.Spire.AgentSock), identity.WithStartTimeout(60*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()

	gw := st.Services["bank-a/gateway"]
	var mu sync.Mutex
	serverSerials, ownSerials := map[string]bool{}, map[string]bool{}
	clients, reconnect := clientsForLoad(func() *tls.Config {
		cfg := transport.ClientTLS(src, gw.Workload.ID)
		getCert := cfg.GetClientCertificate
		cfg.GetClientCertificate = func(cri *tls.CertificateRequestInfo) (*tls.Certificate, error) {
			c, err := getCert(cri)
			if err == nil && len(c.Certificate) > 0 {
				if leaf, perr := x509.ParseCertificate(c.Certificate[0]); perr == nil {
					mu.Lock()
					ownSerials[leaf.SerialNumber.String()] = true
					mu.Unlock()
				}
			}
			return c, err
		}
		cfg.VerifyConnection = func(cs tls.ConnectionState) error {
			mu.Lock()
			serverSerials[cs.PeerCertificates[0].SerialNumber.String()] = true
			mu.Unlock()
			return nil
		}
		return cfg
	})
	url := "https://" + gw.Listen + "/internal/chain"
	stop := load.Start(func(c, i int) error {
		if i%handshakeEvery == handshakeEvery-1 {
			reconnect(c)
		}
		return chainOnce(clients[c], url)
	})
	rotated := func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(serverSerials) >= 3 && len(ownSerials) >= 3
	}
	for !rotated() && ctx.Err() == nil {
		select {
		case <-ctx.Done():
		case <-time.After(200 * time.Millisecond):
		}
	}
	stats := stop()
	stats.Check(t, "rotation under load")
	mu.Lock()
	defer mu.Unlock()
	t.Logf("gateway presented %d SVIDs, the client presented %d", len(serverSerials), len(ownSerials))
	if len(serverSerials) < 3 || len(ownSerials) < 3 {
		t.Fatalf("saw %d gateway and %d client SVIDs before the deadline, want ≥3 each (two rotations)",
			len(serverSerials), len(ownSerials))
	}
}

// TestAgentOutage kills the SPIRE agent while load.Clients clients drive both gateway chains:
// no request fails, every service keeps serving with its still-valid SVID, counts and logs
// the lost Workload API connection, and reports not-ready only when its SVID has less than
// identity.DefaultMinValidity left. The outage lasts until a service has been seen going
// not-ready for that reason (at least 20 s), and ends before any SVID comes within 10 s of
// expiry. Once the agent is back, every service picks up a fresh SVID without a restart.
func TestAgentOutage(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if err := st.WaitReady(ctx, 60*time.Second); err != nil {
		t.Fatal(err)
	}
	edge, _ := st.Topo.Workload("edge")
	cl := mint(t, edge.ID) // minted: the test's own traffic must not depend on the agent
	pids := map[string]int{}
	serialsBefore := map[string]string{}
	for name, svc := range st.Services {
		pids[name] = svc.PID()
		serialsBefore[name] = serverSerial(t, cl, svc)
	}
	gateways := []*stack.Service{st.Services["bank-a/gateway"], st.Services["bank-b/gateway"]}
	clients, reconnect := clientsForLoad(func() *tls.Config {
		// Any gateway: the chain's own hops check the allowlists; this test is about SVIDs.
		return tlsconfig.MTLSClientConfig(cl.svid, cl.bundle, tlsconfig.AuthorizeOneOf(gateways[0].Workload.ID, gateways[1].Workload.ID))
	})

	st.Spire.StopAgent()
	outage := time.Now()
	stop := load.Start(func(c, i int) error {
		if i%handshakeEvery == handshakeEvery-1 {
			reconnect(c)
		}
		return chainOnce(clients[c], "https://"+gateways[(c+i)%2].Listen+"/internal/chain")
	})
	const minOutage, expiryGuard = 20 * time.Second, 10 * time.Second
	ready, svidNotReady, otherNotReady := 0, 0, 0
	for {
		minLeft := time.Duration(1 << 62)
		for name, svc := range st.Services {
			// The service judges its SVID at some instant between before and after, so the
			// rule is checked against the bracket, with no margin to tune.
			notAfter := serverNotAfter(t, cl, svc)
			before := time.Until(notAfter)
			err := svc.Ready(ctx)
			after := time.Until(notAfter)
			minLeft = min(minLeft, after)
			switch {
			case err == nil:
				ready++
				if before < identity.DefaultMinValidity {
					t.Errorf("%s ready with at most %s of SVID validity left", name, before.Round(time.Millisecond))
				}
			case strings.Contains(err.Error(), identity.ErrNoSVID.Error()):
				svidNotReady++
				if after >= identity.DefaultMinValidity {
					t.Errorf("%s not ready for its SVID with at least %s left: %v", name, after.Round(time.Millisecond), err)
				}
			default:
				// Not ready for another reason (a slow database ping on a loaded machine):
				// not what this test judges, but shown.
				otherNotReady++
				t.Logf("%s not ready for a reason other than its SVID: %v", name, err)
			}
		}
		elapsed := time.Since(outage)
		if (elapsed >= minOutage && svidNotReady > 0) || minLeft < expiryGuard || ctx.Err() != nil {
			break
		}
	}
	stats := stop()
	t.Logf("outage of %s: %d ready and %d not-ready (SVID) probes, %d not-ready for other reasons",
		time.Since(outage).Round(time.Second), ready, svidNotReady, otherNotReady)
	stats.Check(t, "agent outage under load")
	if ready == 0 || svidNotReady == 0 {
		t.Errorf("the outage saw %d ready and %d SVID not-ready probes; want both, or the readiness rule was not exercised",
			ready, svidNotReady)
	}
	for name, svc := range st.Services {
		if n := metric(t, svc, "ztbank_workloadapi_disconnects_total", ""); n < 1 {
			t.Errorf("%s: ztbank_workloadapi_disconnects_total = %v, want ≥1", name, n)
		}
		if b, _ := os.ReadFile(svc.LogPath); !strings.Contains(string(b), "workload API watch failed") {
			t.Errorf("%s did not log the lost Workload API connection", name)
		}
	}

	if err := st.Spire.StartAgent(ctx); err != nil {
		t.Fatal(err)
	}
	if err := st.WaitReady(ctx, 120*time.Second); err != nil {
		t.Fatalf("after the agent returned: %v", err)
	}
	// Each service must receive a fresh SVID from the returned agent.
	for name, svc := range st.Services {
		for serverSerial(t, cl, svc) == serialsBefore[name] {
			if ctx.Err() != nil {
				t.Fatalf("%s still presents its pre-outage SVID: no rotation after the agent returned", name)
			}
			select {
			case <-ctx.Done():
			case <-time.After(500 * time.Millisecond):
			}
		}
		if svc.PID() != pids[name] {
			t.Errorf("%s was restarted (pid %d → %d)", name, pids[name], svc.PID())
		}
	}
	for _, gw := range gateways {
		if err := chainOnce(cl.httpClient(gw.Workload.ID), "https://"+gw.Listen+"/internal/chain"); err != nil {
			t.Errorf("after recovery: %s chain failed: %v", gw.Workload.Name, err)
		}
	}
}

func handshake(t *testing.T, cl mintedClient, svc *stack.Service) tls.ConnectionState {
	t.Helper()
	cfg := tlsconfig.MTLSClientConfig(cl.svid, cl.bundle, tlsconfig.AuthorizeAny())
	conn, err := tls.Dial("tcp", svc.Listen, cfg)
	if err != nil {
		// A refused client (allowlist) still completes the client side in TLS 1.3, so
		// an error here is a real failure.
		t.Fatalf("handshake with %s: %v", svc.Workload.Name, err)
	}
	defer conn.Close()
	return conn.ConnectionState()
}

func serverSerial(t *testing.T, cl mintedClient, svc *stack.Service) string {
	return handshake(t, cl, svc).PeerCertificates[0].SerialNumber.String()
}

func serverNotAfter(t *testing.T, cl mintedClient, svc *stack.Service) time.Time {
	return handshake(t, cl, svc).PeerCertificates[0].NotAfter
}
