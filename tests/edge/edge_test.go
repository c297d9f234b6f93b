// Package edge drives the front door end to end on the real local stack: a real OIDC login,
// the edge's token exchange, and the internal JWT as each bank service verifies it.
package edge

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"

	"github.com/ztbank/ztbank/devkit/demo"
	"github.com/ztbank/ztbank/tests/internal/teststack"
	"github.com/ztbank/ztbank/tools/devstack/stack"
)

// internalTTL is short so the replay test can watch an internal JWT expire.
const internalTTL = 15 * time.Second

var (
	st     *teststack.Stack
	public *http.Client // trusts the dev CA, like `curl --cacert`
)

func TestMain(m *testing.M) {
	teststack.Main(m, "ztedge", stack.Options{FrontDoor: true, Postgres: true, Configure: func(s *stack.Stack) {
		if e := s.Services["edge"]; e != nil {
			e.Env = append(e.Env, "EDGE_TOKEN_TTL="+internalTTL.String(), "EDGE_KEY_OVERLAP=1m")
		}
	}}, func(s *teststack.Stack) int {
		st = s
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.TLSClientConfig = st.EdgeTLS()
		public = &http.Client{Timeout: 15 * time.Second, Transport: tr}
		return m.Run()
	})
}

// login obtains an external access token through the provider's real endpoints.
func login(t *testing.T, user string) string {
	t.Helper()
	tok, err := st.Login(context.Background(), public, user)
	if err != nil {
		t.Fatal(err)
	}
	return tok.AccessToken
}

type hop struct {
	Workload string `json:"workload"`
	Caller   string `json:"caller"`
	User     string `json:"user"`
	Tenant   string `json:"tenant"`
	Next     []hop  `json:"next"`
	Error    string `json:"error"`
}

func call(t *testing.T, c *http.Client, method, url, bearer string, header http.Header) (int, []byte, http.Header) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, vs := range header {
		req.Header[k] = vs
	}
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b, resp.Header
}

// TestUserIdentityReachesEveryHop: alice's token goes through the edge; the gateway and the
// services behind it all see her user SPIFFE ID and tenant, from the internal JWT each of
// them verified itself. The diagnostic chain is not public (the edge refuses /internal/, the
// gateway's policy refuses users on it), so the front hops are shown by a public route that
// answers from the user the gateway forwarded, and the hops behind the gateway by the user
// service's chain, called as the gateway with the internal JWT the edge minted for her.
func TestUserIdentityReachesEveryHop(t *testing.T) {
	tok := login(t, "alice@bank-a")
	status, body, _ := call(t, public, "GET", st.Edge.URL+"/bank-a/v1/users/me", tok, nil)
	if status != http.StatusOK || !strings.Contains(string(body), demo.UserID("alice@bank-a").String()) {
		t.Fatalf("GET /bank-a/v1/users/me through the edge: status %d: %s", status, body)
	}
	if status, body, _ := call(t, public, "GET", st.Edge.URL+"/bank-a/internal/chain", tok, nil); status != http.StatusNotFound {
		t.Errorf("GET /bank-a/internal/chain through the edge: status %d, want 404: %s", status, body)
	}
	usr := st.Services["bank-a/user"]
	status, body, _ = call(t, workloadClient(t, "bank-a/gateway", usr.Workload.ID), "GET", "https://"+usr.Listen+"/internal/chain",
		internalToken(t, "alice@bank-a", "bank-a"), nil)
	if status != http.StatusOK {
		t.Fatalf("status %d: %s", status, body)
	}
	var h hop
	if err := json.Unmarshal(body, &h); err != nil {
		t.Fatal(err)
	}
	want := "spiffe://bank-a/user/" + demo.UserID("alice@bank-a").String()
	seen := 0
	var walk func(hop)
	walk = func(h hop) {
		seen++
		if h.Error != "" {
			t.Errorf("%s: %s", h.Workload, h.Error)
		}
		if h.User != want || h.Tenant != "bank-a" {
			t.Errorf("%s saw user %q tenant %q, want %q bank-a", h.Workload, h.User, h.Tenant, want)
		}
		for _, n := range h.Next {
			walk(n)
		}
	}
	walk(h)
	if seen < 2 {
		t.Errorf("chain covered %d services, want user and account", seen)
	}
}

func TestEdgeRefusals(t *testing.T) {
	alice, bob := login(t, "alice@bank-a"), login(t, "bob@bank-b")
	for _, tc := range []struct {
		name   string
		path   string
		bearer string
		header http.Header
		want   int
	}{
		{"no token", "/bank-a/v1/users/me", "", nil, http.StatusUnauthorized},
		{"malformed token", "/bank-a/v1/users/me", "not.a.jwt", nil, http.StatusUnauthorized},
		{"bank-b user on bank-a", "/bank-a/v1/users/me", bob, nil, http.StatusForbidden},
		{"client-supplied X-Spiffe-ID", "/bank-a/v1/users/me", alice,
			http.Header{"X-Spiffe-Id": {"spiffe://ztbank.local/ns/ztbank-system/sa/edge"}}, http.StatusForbidden},
		{"client-supplied XFCC", "/bank-a/v1/users/me", alice,
			http.Header{"X-Forwarded-Client-Cert": {"URI=spiffe://ztbank.local/ns/bank-a/sa/gateway"}}, http.StatusForbidden},
		{"oversized token", "/bank-a/v1/users/me", strings.Repeat("a", 20000), nil, http.StatusRequestHeaderFieldsTooLarge},
		// A client with a valid token may not have the internal JWT handed over: ext_authz
		// answers the ingress's SVID only.
		{"ext_authz without the ingress SVID", "/authz/bank-a/v1/users/me", alice, nil, http.StatusForbidden},
		// Internal routes are not public, whoever asks.
		{"internal route with a token", "/bank-a/internal/chain", alice, nil, http.StatusNotFound},
		{"internal route without a token", "/bank-a/internal/whoami", "", nil, http.StatusNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, body, h := call(t, public, "GET", st.Edge.URL+tc.path, tc.bearer, tc.header)
			if status != tc.want {
				t.Errorf("status %d, want %d: %s", status, tc.want, body)
			}
			if ct := h.Get("Content-Type"); ct != "application/problem+json" {
				t.Errorf("Content-Type %q, want application/problem+json", ct)
			}
		})
	}
}

// ingressClient presents a genuine SVID minted for Emissary-ingress, the only workload the
// topology lets call the edge, and trusts the edge's dev-CA certificate.
func ingressClient(t *testing.T) *http.Client {
	t.Helper()
	w, _ := st.Topo.Workload("emissary-ingress")
	svid, err := st.MintSVID(context.Background(), w.ID)
	if err != nil {
		t.Fatal(err)
	}
	cfg := st.EdgeTLS()
	cfg.Certificates = []tls.Certificate{svid.TLSCertificate()}
	return &http.Client{Timeout: 15 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg}}
}

// internalToken gets the internal JWT the edge mints for user, from the ext_authz endpoint
// that Emissary uses in Kubernetes, asking as the ingress.
func internalToken(t *testing.T, user, tenant string) string {
	t.Helper()
	status, body, h := call(t, ingressClient(t), "GET", st.Edge.URL+"/authz/"+tenant+"/v1/users/me", login(t, user), nil)
	if status != http.StatusOK {
		t.Fatalf("ext_authz for %s: %d %s", user, status, body)
	}
	tok, ok := strings.CutPrefix(h.Get("Authorization"), "Bearer ")
	if !ok {
		t.Fatalf("ext_authz returned no bearer token")
	}
	return tok
}

// workloadClient presents a genuine SVID minted for the named workload and accepts only
// the target service.
func workloadClient(t *testing.T, as string, target spiffeid.ID) *http.Client {
	t.Helper()
	w, ok := st.Topo.Workload(as)
	if !ok {
		t.Fatalf("no workload %s", as)
	}
	svid, err := st.MintSVID(context.Background(), w.ID)
	if err != nil {
		t.Fatal(err)
	}
	cfg := tlsconfig.MTLSClientConfig(svid, svid.Bundle, tlsconfig.AuthorizeID(target))
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg, DisableKeepAlives: true}}
}

// TestInternalTokenChecksAtServices presents internal JWTs straight to bank services,
// bypassing the edge.
func TestInternalTokenChecksAtServices(t *testing.T) {
	bobInternal := internalToken(t, "bob@bank-b", "bank-b")
	aliceInternal := internalToken(t, "alice@bank-a", "bank-a")

	// An internal JWT for bank-b is refused by every bank-a service, even from a caller
	// the topology allows.
	// The gateway's diagnostics refuse users, so its token check is shown on a user route.
	for _, target := range []struct{ svc, as, path string }{
		{"bank-a/gateway", "edge", "/v1/users/me"}, {"bank-a/user", "bank-a/gateway", "/internal/whoami"}, {"bank-a/account", "bank-a/user", "/internal/whoami"},
	} {
		svc := st.Services[target.svc]
		c := workloadClient(t, target.as, svc.Workload.ID)
		status, body, _ := call(t, c, "GET", "https://"+svc.Listen+target.path, bobInternal, nil)
		if status != http.StatusUnauthorized {
			t.Errorf("bank-b token at %s: status %d, want 401: %s", target.svc, status, body)
		}
		// The same path with the right tenant's token works, so the refusal above is the token's.
		if status, body, _ := call(t, c, "GET", "https://"+svc.Listen+target.path, aliceInternal, nil); status != http.StatusOK {
			t.Errorf("bank-a token at %s: status %d: %s", target.svc, status, body)
		}
	}

	// A valid internal JWT does not help a caller without an allowed SVID: the gateway
	// refuses the handshake before it reads any header.
	gw := st.Services["bank-a/gateway"]
	rogue := workloadClient(t, "bank-b/payment", gw.Workload.ID)
	req, _ := http.NewRequest("GET", "https://"+gw.Listen+"/internal/whoami", nil)
	req.Header.Set("Authorization", "Bearer "+aliceInternal)
	if resp, err := rogue.Do(req); err == nil {
		resp.Body.Close()
		t.Errorf("bank-b/payment SVID reached the bank-a gateway: HTTP %d", resp.StatusCode)
	} else if !strings.Contains(err.Error(), "tls:") {
		t.Errorf("refused, but not in the handshake: %v", err)
	}

	// Replay past expiry: the same token keeps working until its own exp plus the
	// verifiers' leeway, and is refused from then on, although it verified before. The test
	// follows the token's exp claim instead of sleeping a fixed time.
	edgeClient := workloadClient(t, "edge", gw.Workload.ID)
	exp := tokenExpiry(t, aliceInternal)
	refusedBy := exp.Add(verifierLeeway + 5*time.Second)
	for {
		asked := time.Now()
		status, body, _ := call(t, edgeClient, "GET", "https://"+gw.Listen+"/v1/users/me", aliceInternal, nil)
		if status == http.StatusUnauthorized {
			// exp has whole seconds, so a refusal a second early is still on time.
			if asked.Before(exp.Add(verifierLeeway - time.Second)) {
				t.Errorf("internal token refused at %s, before its exp %s plus the %s leeway", asked.Format(time.RFC3339), exp.Format(time.RFC3339), verifierLeeway)
			}
			break
		}
		if status != http.StatusOK {
			t.Fatalf("replayed internal token: status %d: %s", status, body)
		}
		if time.Now().After(refusedBy) {
			t.Fatalf("expired internal token still accepted at %s (exp %s)", time.Now().Format(time.RFC3339), exp.Format(time.RFC3339))
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// verifierLeeway is the clock skew every service's internal-token verifier tolerates past
// exp (libs/usertoken's default, which the services use).
const verifierLeeway = 10 * time.Second

// tokenExpiry reads a JWT's exp claim without verifying it (the services verify it).
func tokenExpiry(t *testing.T, raw string) time.Time {
	t.Helper()
	parts := strings.Split(raw, ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWT: %.20q", raw)
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var c struct {
		Exp int64 `json:"exp"`
	}
	if err := json.Unmarshal(payload, &c); err != nil || c.Exp == 0 {
		t.Fatalf("no exp in %s: %v", payload, err)
	}
	return time.Unix(c.Exp, 0)
}
