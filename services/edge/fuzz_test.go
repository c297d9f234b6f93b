package main

import (
	"bufio"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/ztbank/ztbank/devkit/demo"
	"github.com/ztbank/ztbank/libs/usertoken"
)

// fuzzEdge is the real public handler of a test edge (real exchange, minter and tenant
// proxies to gateway stand-ins that verify the internal token), with one external token
// per demo customer.
type fuzzEdge struct {
	*testEdge
	handler http.Handler
	tokens  map[string]string // username → external token the provider issued
}

func newFuzzEdge(f *testing.F) *fuzzEdge {
	te := newTestEdge(f)
	fe := &fuzzEdge{testEdge: te, handler: NewServer(te.deps), tokens: map[string]string{}}
	for _, u := range []string{"alice@bank-a", "bob@bank-b"} {
		fe.tokens[u] = te.provider.SignRS256(f, te.claims(u))
	}
	return fe
}

// serve parses raw as a request off the wire (so only what net/http would accept reaches
// the edge) and serves it. ok is false when net/http itself would refuse the request.
func (fe *fuzzEdge) serve(raw string) (rec *httptest.ResponseRecorder, req *http.Request, ok bool) {
	req, err := http.ReadRequest(bufio.NewReader(strings.NewReader(raw)))
	if err != nil {
		return nil, nil, false
	}
	req.RemoteAddr = "192.0.2.1:1234"
	rec = httptest.NewRecorder()
	fe.handler.ServeHTTP(rec, req)
	return rec, req, true
}

// reached returns how many requests each tenant's gateway has received.
func (fe *fuzzEdge) reached() map[string]int {
	out := map[string]int{}
	for tn, g := range fe.gateways {
		out[tn] = len(g.requests())
	}
	return out
}

// FuzzAuthorizationHeader sends arbitrary Authorization header values to a bank-a route.
// The property: a request reaches bank-a's gateway only when the header carries, as a
// Bearer token, exactly alice's issued external token, and then the gateway sees alice, with
// an internal token in place of the external one; every other value is refused with a
// 4xx problem and reaches no gateway at all.
func FuzzAuthorizationHeader(f *testing.F) {
	fe := newFuzzEdge(f)
	alice, bob := fe.tokens["alice@bank-a"], fe.tokens["bob@bank-b"]
	for _, s := range []string{"Bearer " + alice, "bearer " + alice, "Bearer  " + alice + " ", "Bearer " + bob,
		"Basic YWxpY2U6cHc=", "Bearer", "Bearer ", "", alice, "Bearer " + alice + "x", "Bearer " + alice[1:],
		"Bearer " + alice + ", Bearer " + bob, "Bearer\t" + alice} {
		f.Add(s)
	}
	aliceID, err := usertoken.UserID("bank-a", demo.UserID("alice@bank-a").String())
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, value string) {
		if !sendableHeaderValue(value) {
			return // cannot be sent
		}
		before := fe.reached()
		rec, req, ok := fe.serve("GET /bank-a/v1/users/me HTTP/1.1\r\nHost: edge\r\nAuthorization: " + value + "\r\n\r\n")
		if !ok {
			return
		}
		after := fe.reached()
		if rec.Code == http.StatusOK {
			if tok := bearerOf(req.Header.Get("Authorization")); tok != alice {
				t.Fatalf("Authorization %q reached the gateway, but it does not carry alice's issued token", value)
			}
			if after["bank-a"] != before["bank-a"]+1 || after["bank-b"] != before["bank-b"] {
				t.Fatalf("a 200 for bank-a, gateway requests went %v → %v", before, after)
			}
			got := fe.gateways["bank-a"].requests()[after["bank-a"]-1]
			if got.User.ID != aliceID || strings.Contains(got.Header.Get("Authorization"), alice) {
				t.Fatalf("bank-a's gateway saw user %s and Authorization %.40q, want alice and an internal token",
					got.User.ID, got.Header.Get("Authorization"))
			}
			return
		}
		if rec.Code < 400 || rec.Code > 499 || !strings.HasPrefix(rec.Header().Get("Content-Type"), "application/problem+json") {
			t.Fatalf("Authorization %q: status %d %q, want a 4xx problem", value, rec.Code, rec.Header().Get("Content-Type"))
		}
		if diff := after["bank-a"] + after["bank-b"] - before["bank-a"] - before["bank-b"]; diff != 0 {
			t.Fatalf("Authorization %q was refused (%d) but %d requests reached a gateway", value, rec.Code, diff)
		}
	})
}

// sendableHeaderValue reports whether v can be sent as a header value (RFC 9110 field
// value: no control characters but tab).
func sendableHeaderValue(v string) bool {
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < 0x20 && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}

// bearerOf is the token of a Bearer credential as RFC 6750 reads it: scheme case-insensitive,
// then the token with surrounding whitespace dropped.
func bearerOf(h string) string {
	scheme, tok, ok := strings.Cut(strings.TrimSpace(h), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return ""
	}
	return strings.TrimSpace(tok)
}

// FuzzTenantPath sends arbitrary request targets, as alice (bank-a) or bob (bank-b), to the
// edge's public handler, tenant routes and ext_authz alike. The property: a request reaches
// a gateway only if it is the gateway of the user's own tenant and the path it receives is
// the request's path without the "/<tenant>" prefix; ext_authz says 200 only for the user's
// own tenant. Encoded slashes, dot segments, case tricks and double slashes must not move a
// request to another tenant's gateway.
func FuzzTenantPath(f *testing.F) {
	fe := newFuzzEdge(f)
	for _, s := range []string{"/bank-a/v1/users/me", "/bank-b/v1/accounts", "/bank-a/../bank-b/v1/accounts",
		"/bank-a%2F..%2Fbank-b/v1/accounts", "//bank-b/v1/accounts", "/BANK-B/v1/accounts", "/bank-a",
		"/authz/bank-b/v1/accounts", "/authz/bank-a/v1/accounts", "/authz//bank-b/x", "/authz/bank-a/../bank-b/x",
		"/bank-b%2fv1", "/bank-a/%2e%2e/bank-b/x", "http://edge/bank-b/x", "*", "/bank-a?x=/bank-b/"} {
		f.Add(s, false)
		f.Add(s, true)
	}
	f.Fuzz(func(t *testing.T, target string, asBob bool) {
		user, tenant := "alice@bank-a", "bank-a"
		if asBob {
			user, tenant = "bob@bank-b", "bank-b"
		}
		before := fe.reached()
		rec, req, ok := fe.serve("GET " + target + " HTTP/1.1\r\nHost: edge\r\nAuthorization: Bearer " + fe.tokens[user] + "\r\n\r\n")
		if !ok {
			return
		}
		after := fe.reached()
		for tn := range after {
			n := after[tn] - before[tn]
			switch {
			case n == 0:
			case tn != tenant || n != 1:
				t.Fatalf("%s's request for %q reached %s's gateway %d times", user, target, tn, n)
			default:
				got := fe.gateways[tn].requests()[after[tn]-1]
				if want := strings.TrimPrefix(req.URL.Path, "/"+tenant); "/"+tenant+got.Path != req.URL.Path && !(want == "" && got.Path == "/") {
					t.Fatalf("%q reached %s's gateway as %q, want the path without /%s", target, tn, got.Path, tenant)
				}
				if hasDotSegment(got.Path) {
					t.Fatalf("the path %q was proxied with a dot segment as %q", req.URL.Path, got.Path)
				}
			}
		}
		if strings.HasPrefix(req.URL.Path, "/authz/") && rec.Code == http.StatusOK {
			rest := strings.TrimPrefix(req.URL.Path, "/authz/")
			if first, _, _ := strings.Cut(rest, "/"); first != tenant {
				t.Fatalf("ext_authz allowed %s for path %q (tenant segment %q)", user, req.URL.Path, first)
			}
		}
	})
}
