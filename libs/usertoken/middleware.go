package usertoken

import (
	"net/http"
	"strings"

	"github.com/ztbank/ztbank/libs/caller"
	"github.com/ztbank/ztbank/libs/problem"
)

// BearerToken returns the token of an "Authorization: Bearer <token>" header, or "" when the
// header is absent or uses another scheme. The scheme is case-insensitive (RFC 9110 §11.1).
func BearerToken(h http.Header) string {
	scheme, tok, ok := strings.Cut(h.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return ""
	}
	return strings.TrimSpace(tok)
}

// Middleware verifies the internal token of every request with v and puts the user into the
// request context beside the workload identity. A request without a valid token gets 401
// problem+json of type problem.TypeInternalToken naming only the failed check, and the
// refusal is logged with the full reason.
func Middleware(v *Verifier) func(http.Handler) http.Handler {
	if benchOff {
		return benchMiddleware
	}
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			u, err := v.Verify(r.Context(), BearerToken(r.Header))
			if err != nil {
				reason := Reason(err)
				if reason == nil {
					reason = ErrMalformed
				}
				v.opts.log.WarnContext(r.Context(), "user token refused",
					"reason", reason.Error(), "err", err.Error(),
					"caller", caller.From(r.Context()).Workload.String(),
					"method", r.Method, "path", r.URL.Path)
				w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
				problem.Write(w, r, problem.Refuse(problem.TypeInternalToken, problem.ErrUnauthenticated, reason.Error(), nil))
				return
			}
			next.ServeHTTP(w, r.WithContext(caller.WithUser(r.Context(), u)))
		})
	}
}
