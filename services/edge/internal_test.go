package main

import (
	"encoding/json"
	"io"
	"net/http"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/ztbank/ztbank/libs/problem"
)

// TestInternalRoutesAreNotPublic: a path whose first segment below the tenant is
// "internal", in any letter case and with or without a token, is refused by the edge with a
// 404 edge-refused problem before any exchange, on the proxy and on ext_authz, and never
// reaches the gateway. Before the fix a logged-in user reached the gateway's /internal/chain,
// which fans out to every backend.
func TestInternalRoutesAreNotPublic(t *testing.T) {
	te := newTestEdge(t)
	alice := bearer(te.provider.SignRS256(t, te.claims("alice@bank-a")))
	type answer struct {
		Status int
		Type   string
	}
	refused := answer{http.StatusNotFound, problem.TypeEdge}
	for _, tc := range []struct {
		name, path string
		h          http.Header
		want       answer
	}{
		{"chain with a token", "/bank-a/internal/chain", alice, refused},
		{"whoami with a token", "/bank-a/internal/whoami", alice, refused},
		{"without a token", "/bank-a/internal/whoami", nil, refused},
		{"upper case", "/bank-a/INTERNAL/chain", alice, refused},
		{"doubled slash", "/bank-a//internal/chain", alice, refused},
		{"escaped letter", "/bank-a/%69nternal/chain", alice, refused},
		{"ext_authz", "/authz/bank-a/internal/chain", alice, refused},
		{"public route still served", "/bank-a/v1/users/me", alice, answer{http.StatusOK, ""}},
		{"a segment merely starting with internal", "/bank-a/internals", alice, answer{http.StatusOK, ""}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := len(te.gateways["bank-a"].requests())
			resp := te.do(t, http.MethodGet, tc.path, tc.h)
			body, _ := io.ReadAll(resp.Body)
			var p struct {
				Type string `json:"type"`
			}
			_ = json.Unmarshal(body, &p)
			got := answer{resp.StatusCode, p.Type}
			if resp.StatusCode == http.StatusMovedPermanently {
				// The mux cleans "//" with a redirect; following it must be refused too.
				resp = te.do(t, http.MethodGet, resp.Header.Get("Location"), tc.h)
				body, _ = io.ReadAll(resp.Body)
				_ = json.Unmarshal(body, &p)
				got = answer{resp.StatusCode, p.Type}
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("answer (-want +got):\n%s\n%s", diff, body)
			}
			reached := len(te.gateways["bank-a"].requests()) - before
			if tc.want == refused && reached != 0 {
				t.Errorf("the gateway saw %d requests for a refused internal path", reached)
			}
		})
	}
}
