package mtls

import (
	"context"
	"crypto/tls"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"

	"github.com/ztbank/ztbank/libs/identity"
	"github.com/ztbank/ztbank/libs/localspire"
	"github.com/ztbank/ztbank/libs/transport"
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

// TestRotationWithoutFailedRequests registers this test binary as the edge, so its own
// SVID comes from the agent and rotates like a service's, then calls through the gateway
// chain with a fresh handshake per request across several rotations of every SVID involved.
func TestRotationWithoutFailedRequests(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
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
	cfg := transport.ClientTLS(src, gw.Workload.ID)
	serverSerials := map[string]bool{}
	var mu sync.Mutex
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		mu.Lock()
		serverSerials[cs.PeerCertificates[0].SerialNumber.String()] = true
		mu.Unlock()
		return nil
	}
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg, DisableKeepAlives: true}}
	ownSerials := map[string]bool{}
	requests, failures := 0, 0
	for ctx.Err() == nil {
		if leaf := src.Leaf(); leaf != nil {
			ownSerials[leaf.SerialNumber.String()] = true
		}
		h, status, err := getJSON(client, "https://"+gw.Listen+"/internal/chain")
		requests++
		if err != nil || status != http.StatusOK || len(chainErrors(h)) > 0 {
			failures++
			t.Errorf("request %d failed: status %d, err %v, hops %v", requests, status, err, chainErrors(h))
		}
		mu.Lock()
		done := len(serverSerials) >= 3 && len(ownSerials) >= 3
		mu.Unlock()
		if done {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("%d requests, %d failed; gateway presented %d SVIDs, client held %d", requests, failures,
		len(serverSerials), len(ownSerials))
	if len(serverSerials) < 3 || len(ownSerials) < 3 {
		t.Fatalf("saw %d gateway and %d client SVIDs before the deadline, want ≥3 each (two rotations)",
			len(serverSerials), len(ownSerials))
	}
}

// TestAgentOutage kills the SPIRE agent under load: services keep serving with their
// still-valid SVIDs, count and log the lost Workload API connection, go not-ready only
// when their SVID is about to expire, and pick up rotation again, without a restart, once
// the agent is back.
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

	st.Spire.StopAgent()
	outage := time.Now()
	requests, failures := 0, 0
	for time.Since(outage) < 20*time.Second {
		for _, gwName := range []string{"bank-a/gateway", "bank-b/gateway"} {
			gw := st.Services[gwName]
			h, status, err := getJSON(cl.httpClient(gw.Workload.ID), "https://"+gw.Listen+"/internal/chain")
			requests++
			if err != nil || status != http.StatusOK || len(chainErrors(h)) > 0 {
				failures++
				t.Errorf("during outage: %s chain failed: status %d, err %v, hops %v", gwName, status, err, chainErrors(h))
			}
		}
		for name, svc := range st.Services {
			left := time.Until(serverNotAfter(t, cl, svc))
			err := svc.Ready(ctx)
			// 30s is identity.WithMinValidity's default; allow a few seconds for the race
			// between our two probes.
			switch {
			case err != nil && left > 33*time.Second:
				t.Errorf("%s not ready with %s of SVID validity left: %v", name, left.Round(time.Second), err)
			case err == nil && left < 27*time.Second:
				t.Errorf("%s ready with only %s of SVID validity left", name, left.Round(time.Second))
			}
		}
		time.Sleep(500 * time.Millisecond)
	}
	t.Logf("outage: %d requests, %d failed", requests, failures)
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
	deadline := time.Now().Add(2 * time.Minute)
	for name, svc := range st.Services {
		for serverSerial(t, cl, svc) == serialsBefore[name] {
			if time.Now().After(deadline) {
				t.Fatalf("%s still presents its pre-outage SVID: no rotation after the agent returned", name)
			}
			time.Sleep(time.Second)
		}
		if svc.PID() != pids[name] {
			t.Errorf("%s was restarted (pid %d → %d)", name, pids[name], svc.PID())
		}
	}
	for _, gwName := range []string{"bank-a/gateway", "bank-b/gateway"} {
		gw := st.Services[gwName]
		h, status, err := getJSON(cl.httpClient(gw.Workload.ID), "https://"+gw.Listen+"/internal/chain")
		if err != nil || status != http.StatusOK || len(chainErrors(h)) > 0 {
			t.Errorf("after recovery: %s chain failed: status %d, err %v, hops %v", gwName, status, err, chainErrors(h))
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
