package authz

import (
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"github.com/go-chi/chi/v5"
	"go.opentelemetry.io/otel/trace"

	"github.com/ztbank/ztbank/libs/caller"
	"github.com/ztbank/ztbank/libs/problem"
)

// hopRouter is the account service's read route as a service builds it: the Audit
// middleware, the route's Require and the handler's Check on the account it loaded. It is
// the authorisation part of one zero-trust hop, without the network.
func hopRouter(b testing.TB, e *Engine) http.Handler {
	alice := userID("bank-a", "alice")
	r := chi.NewRouter()
	r.Use(e.Audit)
	r.With(e.Require("accounts:read")).Get("/v1/accounts/{accountID}", func(w http.ResponseWriter, req *http.Request) {
		id := chi.URLParam(req, "accountID")
		if err := e.Check(req.Context(), "accounts:read", Resource{Kind: "account", ID: id, Owner: alice, Tenant: "bank-a"}); err != nil {
			problem.Write(w, req, err)
			return
		}
		w.Write([]byte(`{"id":"acc-42"}`))
	})
	return r
}

// hopRequest is the gateway calling the account service for alice, with the trace context
// telemetry.Server leaves on every request (valid IDs, not recorded without a collector).
func hopRequest(b testing.TB) *http.Request {
	req := httptest.NewRequest(http.MethodGet, "/v1/accounts/acc-42", nil)
	ctx := caller.WithWorkload(req.Context(), workloadID(b, "bank-a/gateway"))
	ctx = caller.WithUser(ctx, caller.User{ID: userID("bank-a", "alice"), Tenant: "bank-a", Roles: []string{"customer"}, TokenID: "jti-alice"})
	ctx = trace.ContextWithSpanContext(ctx, trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: trace.TraceID{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16},
		SpanID:  trace.SpanID{1, 2, 3, 4, 5, 6, 7, 8}, TraceFlags: trace.FlagsSampled,
	}))
	return req.WithContext(ctx)
}

// BenchmarkHopAuthz measures the authorisation of one request as a service's router runs
// it (Audit, Require, the handler's Check, the audit line), the handler itself being
// trivial. "discard" drops the audit lines; "file" writes each to a file as the request
// ends, so its system call is part of the cost; "file-buffered" is the writer services use
// (WithBufferedAuditWriter, ADR 1002). BenchmarkDecide is the decision alone, for the ratio.
func BenchmarkHopAuthz(b *testing.B) {
	for _, sink := range []string{"discard", "file", "file-buffered"} {
		b.Run(sink, func(b *testing.B) {
			var w io.Writer = io.Discard
			if sink != "discard" {
				f, err := os.Create(filepath.Join(b.TempDir(), "audit.log"))
				if err != nil {
					b.Fatal(err)
				}
				b.Cleanup(func() { f.Close() })
				w = f
			}
			opt := WithAuditWriter(w)
			if sink == "file-buffered" {
				opt = WithBufferedAuditWriter(w)
			}
			e := newTestEngine(b, "bank-a/account", opt)
			b.Cleanup(e.Close)
			h := hopRouter(b, e)
			req := hopRequest(b)
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != http.StatusOK {
				b.Fatalf("status %d: %s", rec.Code, rec.Body)
			}
			b.ReportAllocs()
			for b.Loop() {
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, req)
			}
		})
	}
}
