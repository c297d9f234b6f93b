package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/google/go-cmp/cmp"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/ztbank/ztbank/devkit/demo"
	"github.com/ztbank/ztbank/devkit/devoidc"
	"github.com/ztbank/ztbank/devkit/fakeclock"
	"github.com/ztbank/ztbank/devkit/syncbuf"
	"github.com/ztbank/ztbank/libs/caller"
	"github.com/ztbank/ztbank/libs/topology"
	"github.com/ztbank/ztbank/libs/usertoken"
	"github.com/ztbank/ztbank/services/edge/enrol"
	"github.com/ztbank/ztbank/services/edge/exchange"
	"github.com/ztbank/ztbank/services/edge/extoken"
	"github.com/ztbank/ztbank/services/edge/internal/oidctest"
)

// logBuffer collects log output written from server goroutines.
type logBuffer struct{ syncbuf.Buffer }

// refusals returns the reasons of every "request refused" or "user token refused" line so far.
func (s *logBuffer) refusals() []string {
	var out []string
	for _, line := range strings.Split(s.String(), "\n") {
		var e struct{ Msg, Reason string }
		if json.Unmarshal([]byte(line), &e) == nil && strings.HasSuffix(e.Msg, "refused") {
			out = append(out, e.Reason)
		}
	}
	return out
}

// received is what a fake gateway saw.
type received struct {
	Path   string
	Header http.Header
	User   caller.User
}

// gateway is a tenant gateway stand-in: it verifies the internal token with the real
// verifier, fed by the edge's JWKS over TLS, and records every request that reaches it.
type gateway struct {
	*httptest.Server
	mu   sync.Mutex
	got  []received
	keys *usertoken.RemoteKeys
}

func (g *gateway) requests() []received {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]received(nil), g.got...)
}

type testEdge struct {
	deps     deps
	public   *httptest.Server
	internal *httptest.Server
	provider *oidctest.Provider
	minter   *usertoken.Issuer
	gateways map[string]*gateway
	logs     *logBuffer
	clk      *fakeclock.Clock
	edgeID   spiffeid.ID
	ext      *extoken.Verifier
	mapper   enrol.Mapper
	trusted  map[string][]string
}

// exchanger returns another exchanger over the test edge's verifier, mapper and minter.
func (te *testEdge) exchanger(tb testing.TB, opts ...exchange.Option) *exchange.Exchanger {
	tb.Helper()
	return exchange.New(te.ext, te.mapper, te.trusted, te.minter,
		append([]exchange.Option{exchange.WithClock(te.clk.Now), exchange.WithLogger(slog.New(slog.DiscardHandler))}, opts...)...)
}

func newTestEdge(t testing.TB, opts ...usertoken.Option) *testEdge {
	t.Helper()
	p := oidctest.Start(t)
	te := newTestEdgeFor(t, p.URL, p.Client(), opts...)
	te.provider = p
	return te
}

// newTestEdgeFor builds a test edge trusting issuer for every tenant, reached with client.
func newTestEdgeFor(t testing.TB, issuer string, client *http.Client, opts ...usertoken.Option) *testEdge {
	t.Helper()
	topo := topology.Default()
	w, _ := topo.Workload("edge")
	te := &testEdge{logs: &logBuffer{}, clk: fakeclock.New(time.Now().Truncate(time.Second)),
		gateways: map[string]*gateway{}, edgeID: w.ID}
	log := slog.New(slog.NewJSONHandler(te.logs, nil))
	minter, err := usertoken.NewIssuer(w.ID, append([]usertoken.Option{usertoken.WithClock(te.clk.Now)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	te.minter = minter
	ext, err := extoken.New([]string{issuer}, "ztbank", client,
		extoken.WithClock(te.clk.Now), extoken.WithLogger(log))
	if err != nil {
		t.Fatal(err)
	}
	tenants := tenantNames(topo)
	trusted := enrol.Issuers{}
	for _, tn := range tenants {
		trusted[tn] = []string{issuer}
	}
	// The demo users, enrolled through the table the development provider writes.
	table, err := devoidc.EnrolmentTable(devoidc.DemoUsers())
	if err != nil {
		t.Fatal(err)
	}
	mapper, err := enrol.ParseTable(table, "email", trusted)
	if err != nil {
		t.Fatal(err)
	}
	te.ext, te.mapper, te.trusted = ext, mapper, trusted
	d := deps{
		Log:            log,
		Exchanger:      exchange.New(ext, mapper, trusted, minter, exchange.WithLogger(log), exchange.WithClock(te.clk.Now)),
		Minter:         minter,
		Upstreams:      map[string]upstream{},
		Tenants:        tenants,
		AuthzPrefix:    "/authz",
		MaxHeaderBytes: 16 << 10,
		MaxBodyBytes:   1 << 20,
		// These tests exercise the exchange behind ext_authz; who may call it is checked by
		// TestAuthzCallerGate here and with real SVIDs end to end in tests/edge.
		AuthzCaller: func(*http.Request) error { return nil },
	}
	te.deps = d
	te.internal = httptest.NewTLSServer(NewInternalServer(d))
	t.Cleanup(te.internal.Close)
	for _, tn := range tenants {
		g := &gateway{}
		g.keys = usertoken.NewRemoteKeys(te.internal.Client(), te.internal.URL+"/.well-known/jwks.json",
			usertoken.WithClock(te.clk.Now))
		v := usertoken.NewVerifier(g.keys, tn, w.ID, usertoken.WithClock(te.clk.Now), usertoken.WithLogger(log))
		g.Server = httptest.NewTLSServer(usertoken.Middleware(v)(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
			g.mu.Lock()
			g.got = append(g.got, received{Path: r.URL.Path, Header: r.Header.Clone(), User: caller.From(r.Context()).User})
			g.mu.Unlock()
			_, _ = io.WriteString(rw, caller.From(r.Context()).User.ID.String())
		})))
		t.Cleanup(g.Close)
		u, _ := url.Parse(g.URL)
		gw, _ := topo.Workload(tn + "/gateway")
		d.Upstreams[tn] = upstream{URL: u, Transport: g.Client().Transport, ID: gw.ID}
		te.gateways[tn] = g
	}
	te.public = httptest.NewTLSServer(NewServer(d))
	t.Cleanup(te.public.Close)
	return te
}

// claims returns valid external claims for a demo user, relative to the test clock.
func (te *testEdge) claims(username string) map[string]any {
	now := te.clk.Now()
	u, _ := demo.UserByName(username)
	c := map[string]any{
		"iss": te.provider.URL, "aud": []string{"ztbank"}, "sub": u.ID.String(), "email": username,
		"exp": now.Add(time.Hour).Unix(), "iat": now.Unix(), "nbf": now.Unix(),
	}
	if u.Tenant != "" {
		c["tenant"], c["roles"] = u.Tenant, []string{u.Role}
	}
	return c
}

func with(c map[string]any, k string, v any) map[string]any {
	out := map[string]any{}
	for kk, vv := range c {
		out[kk] = vv
	}
	if v == nil {
		delete(out, k)
	} else {
		out[k] = v
	}
	return out
}

func b64(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

func (te *testEdge) do(t testing.TB, method, path string, h http.Header) *http.Response {
	t.Helper()
	req, err := http.NewRequest(method, te.public.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, vs := range h {
		req.Header[k] = vs
	}
	resp, err := te.public.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

func bearer(tok string) http.Header { return http.Header{"Authorization": {"Bearer " + tok}} }

func TestRefusals(t *testing.T) {
	te := newTestEdge(t)
	p := te.provider
	alice := te.claims("alice@bank-a")

	otherRSA, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	otherEC, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(&p.RSA.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	hs256 := func() string {
		s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.HS256, Key: pubPEM},
			(&jose.SignerOptions{}).WithHeader("kid", oidctest.RSAKeyID))
		if err != nil {
			t.Fatal(err)
		}
		raw, err := jwt.Signed(s).Claims(alice).Serialize()
		if err != nil {
			t.Fatal(err)
		}
		return raw
	}()
	payload, _ := json.Marshal(alice)
	good := p.SignRS256(t, alice)
	goodParts := strings.Split(good, ".")
	stranger := with(with(alice, "email", "mallory@bank-a"), "sub", "mallory")

	for _, tc := range []struct {
		name       string
		header     http.Header
		tenant     string
		wantStatus int
		wantReason string
	}{
		{"no token", nil, "bank-a", 401, "no bearer token"},
		{"basic credentials", http.Header{"Authorization": {"Basic YWxpY2U6cHc="}}, "bank-a", 401, "malformed token"},
		{"malformed token", bearer("not.a.jwt"), "bank-a", 401, "malformed token"},
		{"alg none", bearer(b64(`{"alg":"none","kid":"rsa-1"}`) + "." + b64(string(payload)) + "."), "bank-a", 401, "signature algorithm not allowed"},
		{"hs256 with the provider's public key", bearer(hs256), "bank-a", 401, "signature algorithm not allowed"},
		{"wrong signature", bearer(oidctest.Sign(t, jose.RS256, otherRSA, oidctest.RSAKeyID, alice)), "bank-a", 401, "invalid signature"},
		{"tampered payload", bearer(goodParts[0] + "." + b64(string(mustJSON(t, with(alice, "email", "carol@bank-a")))) + "." + goodParts[2]), "bank-a", 401, "invalid signature"},
		{"ES256 under the RSA kid", bearer(oidctest.Sign(t, jose.ES256, p.EC, oidctest.RSAKeyID, alice)), "bank-a", 401, "signature algorithm not allowed"},
		{"expired", bearer(p.SignRS256(t, with(alice, "exp", te.clk.Now().Add(-time.Minute).Unix()))), "bank-a", 401, "token expired"},
		{"no exp", bearer(p.SignRS256(t, with(alice, "exp", nil))), "bank-a", 401, "invalid claims"},
		{"not yet valid", bearer(p.SignRS256(t, with(alice, "nbf", te.clk.Now().Add(5*time.Minute).Unix()))), "bank-a", 401, "token not yet valid"},
		{"issued in the future", bearer(p.SignRS256(t, with(alice, "iat", te.clk.Now().Add(5*time.Minute).Unix()))), "bank-a", 401, "token not yet valid"},
		{"wrong issuer", bearer(p.SignRS256(t, with(alice, "iss", "https://evil.example"))), "bank-a", 401, "issuer not accepted"},
		{"wrong audience", bearer(p.SignRS256(t, with(alice, "aud", []string{"someone-else"}))), "bank-a", 401, "wrong audience"},
		{"unknown kid", bearer(oidctest.Sign(t, jose.ES256, otherEC, "rotated-away", alice)), "bank-a", 401, "unknown signing key"},
		{"user not enrolled", bearer(p.SignES256(t, stranger)), "bank-a", 403, "user not enrolled"},
		{"token claims another tenant", bearer(p.SignES256(t, with(alice, "tenant", "bank-b"))), "bank-b", 403, "user not enrolled"},
		{"bank-b user on bank-a", bearer(p.SignRS256(t, te.claims("bob@bank-b"))), "bank-a", 403, "user belongs to another tenant"},
		{"client X-Spiffe-ID", withHeader(bearer(good), "X-Spiffe-Id", "spiffe://bank-a/user/carol"), "bank-a", 403, "client-supplied identity header"},
		{"client XFCC", withHeader(bearer(good), "X-Forwarded-Client-Cert", `By=spiffe://ztbank.local/ns/bank-a/sa/gateway;URI=spiffe://ztbank.local/ns/ztbank-system/sa/edge`), "bank-a", 403, "client-supplied identity header"},
		{"oversized token", bearer(strings.Repeat("a", extoken.MaxTokenBytes+1)), "bank-a", 401, "token too large"},
		{"oversized headers", withHeader(bearer(good), "X-Padding", strings.Repeat("p", 16<<10)), "bank-a", 431, "headers too large"},
	} {
		for _, front := range []struct{ name, path string }{
			{"proxy", "/" + tc.tenant + "/v1/accounts"},
			{"ext_authz", "/authz/" + tc.tenant + "/v1/accounts"},
		} {
			t.Run(tc.name+"/"+front.name, func(t *testing.T) {
				te.logs.Reset()
				before := len(te.gateways[tc.tenant].requests())
				resp := te.do(t, http.MethodGet, front.path, tc.header)
				var body struct {
					Status int    `json:"status"`
					Detail string `json:"detail"`
				}
				_ = json.NewDecoder(resp.Body).Decode(&body)
				got := struct {
					Status      int
					ContentType string
					BodyStatus  int
					Detail      string
					Logged      []string
					Forwarded   int
				}{resp.StatusCode, resp.Header.Get("Content-Type"), body.Status, body.Detail, te.logs.refusals(),
					len(te.gateways[tc.tenant].requests()) - before}
				want := got
				want.Status, want.BodyStatus, want.ContentType = tc.wantStatus, tc.wantStatus, "application/problem+json"
				want.Logged, want.Forwarded = []string{tc.wantReason}, 0
				if tc.wantStatus != 431 {
					want.Detail = tc.wantReason
				}
				if diff := cmp.Diff(want, got); diff != "" {
					t.Errorf("refusal mismatch (-want +got):\n%s", diff)
				}
			})
		}
	}

	// The control: the same valid token goes through both front ends.
	if resp := te.do(t, http.MethodGet, "/bank-a/v1/accounts", bearer(good)); resp.StatusCode != http.StatusOK {
		t.Errorf("valid token via proxy: status %d", resp.StatusCode)
	}
	if resp := te.do(t, http.MethodGet, "/authz/bank-a/v1/accounts", bearer(good)); resp.StatusCode != http.StatusOK {
		t.Errorf("valid token via ext_authz: status %d", resp.StatusCode)
	}
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func withHeader(h http.Header, k, v string) http.Header {
	h = h.Clone()
	h.Set(k, v)
	return h
}

func TestProxyForwardsOnlyTheInternalToken(t *testing.T) {
	te := newTestEdge(t)
	ext := te.provider.SignRS256(t, te.claims("alice@bank-a"))
	h := bearer(ext)
	h.Set("Connection", "X-Hop")
	h.Set("X-Hop", "should not pass")
	h.Set("Te", "trailers, deflate")
	h.Set("Proxy-Authorization", "Basic c2VjcmV0")
	h.Set("X-Internal-Token", "forged")
	h.Set("X-Ztbank-User", "spiffe://bank-a/user/carol")
	h.Set("X-Forwarded-For", "6.6.6.6")
	h.Set("X-Request-Id", "keep-me")

	resp := te.do(t, http.MethodGet, "/bank-a/v1/accounts?limit=2", h)
	body, _ := io.ReadAll(resp.Body)
	alice, _ := demo.UserByName("alice@bank-a")
	aliceID := spiffeid.RequireFromString("spiffe://bank-a/user/" + alice.ID.String())
	if resp.StatusCode != http.StatusOK || string(body) != aliceID.String() {
		t.Fatalf("status %d body %q, want 200 %q", resp.StatusCode, body, aliceID)
	}
	reqs := te.gateways["bank-a"].requests()
	if len(reqs) != 1 {
		t.Fatalf("gateway got %d requests, want 1", len(reqs))
	}
	got := reqs[0]
	// ReverseProxy keeps only "Te: trailers", which gRPC needs; the rest of Te is dropped.
	if te := got.Header.Get("Te"); te != "" && te != "trailers" {
		t.Errorf("gateway received Te: %q", te)
	}
	for _, name := range []string{"Connection", "X-Hop", "Proxy-Authorization", "X-Internal-Token", "X-Ztbank-User"} {
		if v := got.Header.Values(name); len(v) > 0 {
			t.Errorf("gateway received %s: %q", name, v)
		}
	}
	if got.Header.Get("X-Request-Id") != "keep-me" {
		t.Errorf("X-Request-Id = %q, want it passed through", got.Header.Get("X-Request-Id"))
	}
	if xff := got.Header.Get("X-Forwarded-For"); strings.Contains(xff, "6.6.6.6") {
		t.Errorf("X-Forwarded-For = %q: client-supplied value passed through", xff)
	}
	if got.Path != "/v1/accounts" {
		t.Errorf("gateway path = %q, want /v1/accounts", got.Path)
	}
	if got.Header.Get("Authorization") == "Bearer "+ext {
		t.Error("the external token reached the gateway")
	}
	if got.Header.Get("X-Spiffe-Id") != aliceID.String() {
		t.Errorf("X-Spiffe-Id = %q, want %s", got.Header.Get("X-Spiffe-Id"), aliceID)
	}
	want := caller.User{ID: aliceID, Tenant: "bank-a", Roles: []string{"customer"}}
	gotUser := got.User
	gotUser.TokenID, gotUser.Token = "", ""
	if diff := cmp.Diff(want, gotUser, cmp.Comparer(func(a, b spiffeid.ID) bool { return a == b })); diff != "" {
		t.Errorf("verified user mismatch (-want +got):\n%s", diff)
	}

	// The internal token is for bank-a only: every bank-b verifier refuses it.
	internal := got.User.Token
	bankB := usertoken.NewVerifier(te.gateways["bank-b"].keys, "bank-b", te.edgeID, usertoken.WithClock(te.clk.Now))
	if _, err := bankB.Verify(context.Background(), internal); !errors.Is(err, usertoken.ErrAudience) {
		t.Errorf("bank-b Verify(bank-a token) = %v, want ErrAudience", err)
	}
	// Sent straight to a bank-b service, it is refused with 401 problem+json.
	req, _ := http.NewRequest(http.MethodGet, te.gateways["bank-b"].URL+"/v1/payments", nil)
	req.Header.Set("Authorization", "Bearer "+internal)
	bresp, err := te.gateways["bank-b"].Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	bresp.Body.Close()
	if bresp.StatusCode != http.StatusUnauthorized || bresp.Header.Get("Content-Type") != "application/problem+json" {
		t.Errorf("bank-b gateway with a bank-a token: %d %s", bresp.StatusCode, bresp.Header.Get("Content-Type"))
	}

	// One internal token per external token, reused while valid.
	te.do(t, http.MethodGet, "/bank-a/v1/accounts", bearer(ext))
	reqs = te.gateways["bank-a"].requests()
	if reqs[1].User.TokenID != reqs[0].User.TokenID {
		t.Error("a second request with the same external token minted a new internal token")
	}

	// Replayed past its expiry, the internal token is refused even by a verifier that cached it.
	te.clk.Add(usertoken.MaxTTL + time.Minute)
	req, _ = http.NewRequest(http.MethodGet, te.gateways["bank-a"].URL+"/v1/accounts", nil)
	req.Header.Set("Authorization", "Bearer "+internal)
	aresp, err := te.gateways["bank-a"].Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	aresp.Body.Close()
	if aresp.StatusCode != http.StatusUnauthorized {
		t.Errorf("replayed expired internal token: status %d, want 401", aresp.StatusCode)
	}
}

func TestExtAuthzAnswer(t *testing.T) {
	te := newTestEdge(t)
	ext := te.provider.SignES256(t, te.claims("erin@bank-b"))
	resp := te.do(t, http.MethodPost, "/authz/bank-b/v1/payments", bearer(ext))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d, want 200", resp.StatusCode)
	}
	erin, _ := demo.UserByName("erin@bank-b")
	tok, ok := strings.CutPrefix(resp.Header.Get("Authorization"), "Bearer ")
	if !ok {
		t.Fatalf("Authorization = %q, want a bearer token", resp.Header.Get("Authorization"))
	}
	v := usertoken.NewVerifier(te.minter, "bank-b", te.edgeID, usertoken.WithClock(te.clk.Now))
	u, err := v.Verify(context.Background(), tok)
	if err != nil {
		t.Fatalf("returned token does not verify: %v", err)
	}
	got := []string{resp.Header.Get("X-Spiffe-Id"), u.ID.String(), u.Tenant, strings.Join(u.Roles, ",")}
	want := []string{"spiffe://bank-b/user/" + erin.ID.String(), "spiffe://bank-b/user/" + erin.ID.String(), "bank-b", "staff"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("ext_authz answer mismatch (-want +got):\n%s", diff)
	}
	if n := len(te.gateways["bank-b"].requests()); n != 0 {
		t.Errorf("ext_authz forwarded %d requests; it must only answer", n)
	}
}

func TestInternalTokenNeverOutlivesExternal(t *testing.T) {
	te := newTestEdge(t)
	c := with(te.claims("alice@bank-a"), "exp", te.clk.Now().Add(90*time.Second).Unix())
	resp := te.do(t, http.MethodGet, "/authz/bank-a/x", bearer(te.provider.SignRS256(t, c)))
	tok, _ := strings.CutPrefix(resp.Header.Get("Authorization"), "Bearer ")
	var wc jwt.Claims
	parsed, err := jwt.ParseSigned(tok, []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		t.Fatal(err)
	}
	if err := parsed.Claims(te.minter.JWKS().Keys[0].Key, &wc); err != nil {
		t.Fatal(err)
	}
	if got, want := wc.Expiry.Time().Unix(), c["exp"].(int64); got != want {
		t.Errorf("internal exp = %d, want the external token's %d", got, want)
	}
}

// TestRotationUnderSteadyLoad sends one request per simulated second through the proxy
// across several key rotations; every one must reach the gateway and verify there.
func TestRotationUnderSteadyLoad(t *testing.T) {
	te := newTestEdge(t, usertoken.WithTTL(time.Minute), usertoken.WithRotation(2*time.Minute, 90*time.Second))
	users := []string{"alice@bank-a", "carol@bank-a", "bob@bank-b", "dave@bank-b"}
	tokens := map[string]string{}
	for _, u := range users {
		tokens[u] = te.provider.SignRS256(t, te.claims(u))
	}
	kids := map[string]bool{}
	const seconds = 7 * 60
	for s := 0; s < seconds; s++ {
		u := users[s%len(users)]
		tenant := strings.SplitN(u, "@", 2)[1]
		resp := te.do(t, http.MethodGet, "/"+tenant+"/v1/whoami", bearer(tokens[u]))
		if resp.StatusCode != http.StatusOK {
			b, _ := io.ReadAll(resp.Body)
			t.Fatalf("second %d (%s): status %d: %s; refusals %q", s, u, resp.StatusCode, b, te.logs.refusals())
		}
		resp.Body.Close()
		kids[te.minter.JWKS().Keys[0].KeyID] = true
		te.clk.Add(time.Second)
	}
	if len(kids) < 4 {
		t.Errorf("saw %d signing keys in 7 minutes with a 2-minute period, want 4", len(kids))
	}
	if n := len(te.gateways["bank-a"].requests()) + len(te.gateways["bank-b"].requests()); n != seconds {
		t.Errorf("gateways received %d requests, want %d", n, seconds)
	}
}

// TestAuthzCallerGate checks that ext_authz answers only callers the gate admits, and that
// an edge without a gate refuses everyone.
func TestAuthzCallerGate(t *testing.T) {
	te := newTestEdge(t)
	tok := te.provider.SignRS256(t, te.claims("alice@bank-a"))
	for _, tc := range []struct {
		name string
		gate func(*http.Request) error
		want int
	}{
		{"admitted", func(*http.Request) error { return nil }, http.StatusOK},
		{"refused", func(*http.Request) error { return errors.New("not the ingress") }, http.StatusForbidden},
		{"no gate configured", nil, http.StatusForbidden},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := te.deps
			d.AuthzCaller = tc.gate
			srv := httptest.NewTLSServer(NewServer(d))
			defer srv.Close()
			req, _ := http.NewRequest(http.MethodGet, srv.URL+"/authz/bank-a/v1/accounts", nil)
			req.Header.Set("Authorization", "Bearer "+tok)
			resp, err := srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.want)
			}
			if tc.want == http.StatusForbidden && resp.Header.Get("Authorization") != "" {
				t.Error("a refused caller got an internal token")
			}
		})
	}
}
