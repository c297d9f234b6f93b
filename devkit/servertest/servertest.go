// Package servertest runs a service's real router — the real policy engine, the real
// internal-JWT verifier, the platform middleware — for handler tests. It runs in mesh mode,
// so a test names the calling workload in the X-Forwarded-Client-Cert header as the sidecar
// would (mTLS itself is proven by tests/mtls), and it mints internal JWTs as the edge would.
package servertest

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/go-chi/chi/v5"
	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ztbank/ztbank/devkit/demo"
	"github.com/ztbank/ztbank/libs/authz"
	"github.com/ztbank/ztbank/libs/server"
	"github.com/ztbank/ztbank/libs/topology"
	"github.com/ztbank/ztbank/libs/transport"
	"github.com/ztbank/ztbank/libs/usertoken"
)

// Harness is one service under test.
type Harness struct {
	T       testing.TB
	Topo    *topology.Topology
	Issuer  *usertoken.Issuer // stands in for the edge
	Runtime *server.Runtime
	Server  *httptest.Server // set by Serve
}

// New builds the runtime of the named workload with its real policy and a token verifier
// that trusts Issuer.
func New(t testing.TB, workload string) *Harness {
	t.Helper()
	return NewIn(t, topology.Default(), workload)
}

// NewIn is New against another topology, such as one with a tenant the committed file does
// not have: the same service code must serve it.
func NewIn(t testing.TB, topo *topology.Topology, workload string) *Harness {
	t.Helper()
	self, ok := topo.Workload(workload)
	if !ok {
		t.Fatalf("no workload %s in the topology", workload)
	}
	edge, _ := topo.Workload("edge")
	issuer, err := usertoken.NewIssuer(edge.ID)
	if err != nil {
		t.Fatal(err)
	}
	az, err := authz.New(t.Context(), authz.Service{Workload: self.Name, Tenant: self.Tenant, ID: self.ID}, topo,
		authz.WithRegisterer(prometheus.NewRegistry()), authz.WithAuditWriter(io.Discard))
	if err != nil {
		t.Fatal(err)
	}
	rt := &server.Runtime{Env: server.Env{Mode: transport.Mesh}, Topology: topo, Self: self,
		Log: slog.New(slog.DiscardHandler), Authz: az, Tokens: usertoken.NewVerifier(issuer, self.Tenant, edge.ID)}
	return &Harness{T: t, Topo: topo, Issuer: issuer, Runtime: rt}
}

// Serve checks that every route of h declares its authorisation, then serves it. A route
// added without a Require fails here, not in production.
func (h *Harness) Serve(handler http.Handler) {
	h.T.Helper()
	routes, ok := handler.(chi.Routes)
	if !ok {
		h.T.Fatalf("handler %T is not a chi router", handler)
	}
	if err := authz.Guarded(routes); err != nil {
		h.T.Fatal(err)
	}
	h.Server = httptest.NewServer(handler)
	h.T.Cleanup(h.Server.Close)
}

// Token mints the internal JWT the edge would issue for a demo user.
func (h *Harness) Token(username string) string {
	h.T.Helper()
	u, ok := demo.UserByName(username)
	if !ok {
		h.T.Fatalf("no demo user %s", username)
	}
	id, err := usertoken.UserID(u.Tenant, u.ID.String())
	if err != nil {
		h.T.Fatal(err)
	}
	tok, err := h.Issuer.Mint(h.T.Context(), usertoken.Claims{User: id, Tenant: u.Tenant, Roles: []string{u.Role}})
	if err != nil {
		h.T.Fatal(err)
	}
	return tok
}

// TokenFor mints the internal JWT the edge would issue for user id of tenant with roles.
func (h *Harness) TokenFor(tenant, id string, roles ...string) string {
	h.T.Helper()
	uid, err := usertoken.UserID(tenant, id)
	if err != nil {
		h.T.Fatal(err)
	}
	tok, err := h.Issuer.Mint(h.T.Context(), usertoken.Claims{User: uid, Tenant: tenant, Roles: roles})
	if err != nil {
		h.T.Fatal(err)
	}
	return tok
}

// Do sends one request as workload (named in XFCC) on behalf of user (a demo username; empty
// for none) and returns the status and body.
func (h *Harness) Do(workload, user, method, path, body string) (int, string) {
	h.T.Helper()
	hdr := http.Header{}
	if user != "" {
		hdr.Set("Authorization", "Bearer "+h.Token(user))
	}
	r := h.Send(workload, method, path, body, hdr)
	return r.Status, r.Body
}

// Response is what Send returns.
type Response struct {
	Status int
	Header http.Header
	Body   string
}

// Send is Do with explicit headers (an Idempotency-Key, a tampered token...).
func (h *Harness) Send(workload, method, path, body string, hdr http.Header) Response {
	h.T.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(h.T.Context(), method, h.Server.URL+path, rd)
	if err != nil {
		h.T.Fatal(err)
	}
	for k, vs := range hdr {
		req.Header[k] = vs
	}
	w, ok := h.Topo.Workload(workload)
	if !ok {
		h.T.Fatalf("no workload %s in the topology", workload)
	}
	req.Header.Set("X-Forwarded-Client-Cert", "URI="+w.ID.String())
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		h.T.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return Response{Status: resp.StatusCode, Header: resp.Header, Body: string(raw)}
}

// Check fails t unless the answer to request (such as "GET /v1/accounts") has status want
// and a body that holds every string of holds and none of lacks (another user's data, say);
// empty strings are skipped. A wrong status stops the test, as nothing after it can hold.
func Check(t testing.TB, request string, status int, body string, want int, holds, lacks []string) {
	t.Helper()
	if diff := cmp.Diff(want, status); diff != "" {
		t.Fatalf("%s status mismatch (-want +got):\n%s\nbody: %s", request, diff, body)
	}
	for _, s := range holds {
		if !strings.Contains(body, s) {
			t.Errorf("body lacks %q: %s", s, body)
		}
	}
	for _, s := range lacks {
		if s != "" && strings.Contains(body, s) {
			t.Errorf("body leaks %q: %s", s, body)
		}
	}
}

// PeerGuard is the middleware of a test server that stands in for a peer of the service
// under test: like the real peer, it refuses a request that does not come from the service
// (XFCC, as PeerClient sends it) or carries no valid forwarded user token.
func (h *Harness) PeerGuard(next http.Handler) http.Handler {
	self := "URI=" + h.Runtime.Self.ID.String()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-Forwarded-Client-Cert") != self {
			http.Error(w, "not the service under test", http.StatusForbidden)
			return
		}
		if _, err := h.Runtime.Tokens.Verify(r.Context(), usertoken.BearerToken(r.Header)); err != nil {
			http.Error(w, "no user token forwarded", http.StatusUnauthorized)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// PeerClient is the real mesh-mode peer client of the service under test (it forwards the
// user's token), with the XFCC header the service's sidecar would add on the way out.
func (h *Harness) PeerClient() *http.Client {
	id := h.Runtime.Self.ID.String()
	return transport.MeshClient(transport.WithRoundTripper(func(next http.RoundTripper) http.RoundTripper {
		return sidecar{next: next, id: id}
	}))
}

type sidecar struct {
	next http.RoundTripper
	id   string
}

func (s sidecar) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("X-Forwarded-Client-Cert", "URI="+s.id)
	return s.next.RoundTrip(r)
}
