//go:build ztbench_off

// The internal-JWT half of tools/pathbench's "zero trust off" reference build (issue 14):
// the token the edge forwards is read, not verified, so handlers see the same user without
// any signature, issuer, audience or expiry check. Production builds never carry the tag
// (tests/benchtag); libs/transport's half refuses to start outside the harness.

package usertoken

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strings"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/ztbank/ztbank/libs/caller"
)

const benchOff = true

func benchMiddleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		raw := BearerToken(r.Header)
		var wc wireClaims
		if _, payload, ok := strings.Cut(raw, "."); ok {
			payload, _, _ = strings.Cut(payload, ".")
			if b, err := base64.RawURLEncoding.DecodeString(payload); err == nil {
				_ = json.Unmarshal(b, &wc)
			}
		}
		sub, _ := spiffeid.FromString(wc.Subject)
		u := caller.User{ID: sub, Tenant: wc.Tenant, Roles: wc.Roles, TokenID: wc.ID, Token: raw}
		next.ServeHTTP(w, r.WithContext(caller.WithUser(r.Context(), u)))
	})
}
