package authz

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/go-chi/chi/v5"
	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/ztbank/ztbank/devkit/syncbuf"
	"github.com/ztbank/ztbank/libs/caller"
	"github.com/ztbank/ztbank/libs/problem"
)

// lockedBuffer collects log lines written from handler goroutines.
type lockedBuffer struct{ syncbuf.Buffer }

// lines decodes every JSON line written so far.
func (b *lockedBuffer) lines(t *testing.T) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(b.String()), "\n") {
		if l == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("audit line %q is not JSON: %v", l, err)
		}
		out = append(out, m)
	}
	return out
}

// traceLogHandler adds the request's trace ID to every line, as the services' loggers do.
type traceLogHandler struct{ slog.Handler }

func (h traceLogHandler) Handle(ctx context.Context, r slog.Record) error {
	if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
		r.AddAttrs(slog.String("trace_id", sc.TraceID().String()))
	}
	return h.Handler.Handle(ctx, r)
}

// account is what the ledger test handler "loads" from its store.
type account struct {
	owner  spiffeid.ID
	tenant string
}

// ledgerFixture is the bank-b ledger with realistic routes, an Audit middleware, a tracer
// and a logger, so the tests observe what a service's operator would see.
type ledgerFixture struct {
	engine  *Engine
	router  chi.Router
	audit   *lockedBuffer
	logs    *lockedBuffer
	reg     *prometheus.Registry
	handled atomic.Int32
}

func newLedgerFixture(t *testing.T) *ledgerFixture {
	t.Helper()
	f := &ledgerFixture{audit: &lockedBuffer{}, logs: &lockedBuffer{}, reg: prometheus.NewRegistry()}
	f.engine = newTestEngine(t, "bank-b/ledger", WithAuditWriter(f.audit), WithRegisterer(f.reg))
	logger := slog.New(traceLogHandler{slog.NewJSONHandler(f.logs, nil)})
	tracer := sdktrace.NewTracerProvider().Tracer("test")
	accounts := map[string]account{
		"a1": {userID("bank-b", "alice"), "bank-b"},
		"c1": {userID("bank-b", "carol"), "bank-b"},
		"x1": {userID("bank-a", "bob"), "bank-a"}, // a row that must never be served by bank-b
	}
	az := f.engine

	r := chi.NewRouter()
	// Tracing outside the audit, as the service scaffolding installs it.
	r.Use(func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			ctx, span := tracer.Start(req.Context(), req.Method)
			defer span.End()
			logger.InfoContext(ctx, "request", "path", req.URL.Path)
			next.ServeHTTP(w, req.WithContext(ctx))
		})
	})
	r.Use(az.Audit)
	entries := func(w http.ResponseWriter, req *http.Request) {
		f.handled.Add(1)
		a, ok := accounts[chi.URLParam(req, "accountID")]
		if !ok {
			problem.Write(w, req, problem.ErrNotFound)
			return
		}
		err := az.Check(req.Context(), "ledger:read", Resource{Kind: "account", ID: chi.URLParam(req, "accountID"), Owner: a.owner, Tenant: a.tenant})
		if err != nil {
			logger.InfoContext(req.Context(), "denied")
			problem.Write(w, req, err)
			return
		}
		logger.InfoContext(req.Context(), "served")
		w.Write([]byte(`{"entries":[]}`))
	}
	r.With(az.Require("ledger:read")).Get("/v1/accounts/{accountID}/entries", entries)
	// By role: the fixture's tenant's payment workload, resolved from the topology.
	r.With(az.Require("ledger:post", FromSameTenant("payment"))).Post("/v1/postings", func(w http.ResponseWriter, req *http.Request) {
		f.handled.Add(1)
		w.WriteHeader(http.StatusCreated)
	})
	r.With(az.Require("whoami", WorkloadOnly())).Get("/internal/whoami", func(w http.ResponseWriter, req *http.Request) {
		f.handled.Add(1)
		w.Write([]byte(caller.From(req.Context()).Workload.String()))
	})
	f.router = r
	return f
}

// do sends a request as the given caller workload and user.
func (f *ledgerFixture) do(t *testing.T, method, path string, from string, user caller.User) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(method, path, nil)
	ctx := req.Context()
	if from != "" {
		ctx = caller.WithWorkload(ctx, workloadID(t, from))
	}
	if !user.ID.IsZero() {
		ctx = caller.WithUser(ctx, user)
	}
	rec := httptest.NewRecorder()
	f.router.ServeHTTP(rec, req.WithContext(ctx))
	return rec
}

func customer(tenant, id string) caller.User {
	return caller.User{ID: userID(tenant, id), Tenant: tenant, Roles: []string{"customer"}, TokenID: "jti-" + id}
}

func staffUser(tenant, id string) caller.User {
	return caller.User{ID: userID(tenant, id), Tenant: tenant, Roles: []string{"staff"}, TokenID: "jti-" + id}
}

// auditSummary is the part of an audit line a test compares exactly.
type auditSummary struct {
	Result, Reason, Action, Route, Caller, User string
	Status                                      float64
}

func summarise(m map[string]any) auditSummary {
	s := func(k string) string { v, _ := m[k].(string); return v }
	st, _ := m["status"].(float64)
	return auditSummary{Result: s("result"), Reason: s("reason"), Action: s("action"), Route: s("route"),
		Caller: s("caller_workload"), User: s("user"), Status: st}
}

// TestRequestsAreAuditedOnce sends requests covering every outcome through the real router
// and checks the response, that exactly one audit line was written, what it says, that its
// trace ID is the one on the service's own log lines, and that denials carry the decision ID
// and nothing of the policy's reasoning.
func TestRequestsAreAuditedOnce(t *testing.T) {
	gw, pay := "bank-b/gateway", "bank-b/payment"
	alice := customer("bank-b", "alice")
	ledgerID := "spiffe://ztbank.local/ns/bank-b/sa/"
	for _, tc := range []struct {
		name        string
		method      string
		path        string
		from        string
		user        caller.User
		wantStatus  int
		wantAudit   auditSummary
		wantHandled int
	}{
		{"own account", "GET", "/v1/accounts/a1/entries", gw, alice, 200,
			auditSummary{"allow", "allowed", "ledger:read", "/v1/accounts/{accountID}/entries", ledgerID + "gateway", alice.ID.String(), 200}, 1},
		{"another user's account", "GET", "/v1/accounts/c1/entries", gw, alice, 403,
			auditSummary{"deny", "not_owner", "ledger:read", "/v1/accounts/{accountID}/entries", ledgerID + "gateway", alice.ID.String(), 403}, 1},
		{"account of the other tenant", "GET", "/v1/accounts/x1/entries", gw, alice, 403,
			auditSummary{"deny", "tenant_mismatch", "ledger:read", "/v1/accounts/{accountID}/entries", ledgerID + "gateway", alice.ID.String(), 403}, 1},
		{"user of the other tenant", "GET", "/v1/accounts/x1/entries", gw, customer("bank-a", "bob"), 403,
			auditSummary{"deny", "tenant_mismatch", "ledger:read", "/v1/accounts/{accountID}/entries", ledgerID + "gateway", "spiffe://bank-a/user/bob", 403}, 0},
		{"staff reads", "GET", "/v1/accounts/c1/entries", gw, staffUser("bank-b", "sam"), 200,
			auditSummary{"allow", "allowed", "ledger:read", "/v1/accounts/{accountID}/entries", ledgerID + "gateway", "spiffe://bank-b/user/sam", 200}, 1},
		{"staff posts", "POST", "/v1/postings", pay, staffUser("bank-b", "sam"), 403,
			auditSummary{"deny", "role_not_permitted", "ledger:post", "/v1/postings", ledgerID + "payment", "spiffe://bank-b/user/sam", 403}, 0},
		{"customer posts through payment", "POST", "/v1/postings", pay, alice, 201,
			auditSummary{"allow", "allowed", "ledger:post", "/v1/postings", ledgerID + "payment", alice.ID.String(), 201}, 1},
		{"gateway posts directly", "POST", "/v1/postings", gw, alice, 403,
			auditSummary{"deny", "workload_not_allowed", "ledger:post", "/v1/postings", ledgerID + "gateway", alice.ID.String(), 403}, 0},
		{"no end user", "GET", "/v1/accounts/a1/entries", gw, caller.User{}, 403,
			auditSummary{"deny", "user_required", "ledger:read", "/v1/accounts/{accountID}/entries", ledgerID + "gateway", "", 403}, 0},
		{"workload-only route", "GET", "/internal/whoami", pay, caller.User{}, 200,
			auditSummary{"allow", "allowed", "whoami", "/internal/whoami", ledgerID + "payment", "", 200}, 1},
		{"no such route", "GET", "/v1/nothing", gw, alice, 404,
			auditSummary{"deny", ReasonNoRoute, "", "", ledgerID + "gateway", alice.ID.String(), 404}, 0},
		{"wrong method", "DELETE", "/v1/postings", pay, alice, 405,
			auditSummary{"deny", ReasonNoRoute, "", "", ledgerID + "payment", alice.ID.String(), 405}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newLedgerFixture(t)
			rec := f.do(t, tc.method, tc.path, tc.from, tc.user)
			if rec.Code != tc.wantStatus {
				t.Fatalf("status = %d, want %d; body %s", rec.Code, tc.wantStatus, rec.Body)
			}
			if got := int(f.handled.Load()); got != tc.wantHandled {
				t.Errorf("handler ran %d times, want %d", got, tc.wantHandled)
			}
			lines := f.audit.lines(t)
			if len(lines) != 1 {
				t.Fatalf("got %d audit lines, want exactly 1:\n%v", len(lines), lines)
			}
			line := lines[0]
			if diff := cmp.Diff(tc.wantAudit, summarise(line)); diff != "" {
				t.Errorf("audit line mismatch (-want +got):\n%s", diff)
			}
			for _, k := range []string{"time", "decision_id", "policy_revision", "trace_id", "tenant", "service"} {
				if s, _ := line[k].(string); s == "" {
					t.Errorf("audit line has no %s: %v", k, line)
				}
			}
			if got := line["policy_revision"]; got != f.engine.Revision() {
				t.Errorf("policy_revision = %v, want %s", got, f.engine.Revision())
			}
			if strings.Contains(tc.path, "/v1/accounts/") && line["route"] != "" && strings.Contains(line["route"].(string), "a1") {
				t.Errorf("route %v carries the raw path", line["route"])
			}
			// The trace ID on the audit line is the one on the service's own log lines.
			for _, l := range f.logs.lines(t) {
				if l["trace_id"] != line["trace_id"] {
					t.Errorf("log line %v has trace_id %v, audit line %v", l["msg"], l["trace_id"], line["trace_id"])
				}
			}
			if got := testutil.ToFloat64(f.engine.audit.counter.WithLabelValues("bank-b/ledger", tc.wantAudit.Result, tc.wantAudit.Reason)); got != 1 {
				t.Errorf("ztbank_authz_decisions_total{result=%q,reason=%q} = %v, want 1", tc.wantAudit.Result, tc.wantAudit.Reason, got)
			}
			if tc.wantStatus == http.StatusForbidden {
				var body map[string]any
				if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
					t.Fatalf("403 body is not JSON: %v", err)
				}
				if got := rec.Header().Get("Content-Type"); got != "application/problem+json" {
					t.Errorf("Content-Type = %q", got)
				}
				if body["decision_id"] != line["decision_id"] {
					t.Errorf("403 decision_id = %v, audit line has %v", body["decision_id"], line["decision_id"])
				}
				if body["type"] != problem.TypePolicy {
					t.Errorf("403 type = %v, want the policy's refusal mark %s", body["type"], problem.TypePolicy)
				}
				if strings.Contains(rec.Body.String(), tc.wantAudit.Reason) || strings.Contains(rec.Body.String(), "bank-a") {
					t.Errorf("403 body leaks the decision: %s", rec.Body)
				}
			}
		})
	}
}

// TestDeniedCheckReturnsForbidden checks the error handlers get from Check: it is a
// problem.ErrForbidden carrying the decision ID, and a standalone Check (no Audit
// middleware) writes its own audit line.
func TestDeniedCheckReturnsForbidden(t *testing.T) {
	audit := &lockedBuffer{}
	e := newTestEngine(t, "bank-b/ledger", WithAuditWriter(audit))
	ctx := caller.WithWorkload(t.Context(), workloadID(t, "bank-b/gateway"))
	ctx = caller.WithUser(ctx, customer("bank-b", "alice"))

	err := e.Check(ctx, "ledger:read", Resource{Owner: userID("bank-b", "carol"), Tenant: "bank-b"})
	if !errors.Is(err, problem.ErrForbidden) {
		t.Fatalf("Check() = %v, want a problem.ErrForbidden", err)
	}
	d := problem.From(err)
	lines := audit.lines(t)
	if len(lines) != 1 {
		t.Fatalf("got %d audit lines, want 1", len(lines))
	}
	if d.Status != http.StatusForbidden || d.Type != problem.TypePolicy || d.Extra["decision_id"] != lines[0]["decision_id"] {
		t.Errorf("problem = %+v, audit decision_id %v", d, lines[0]["decision_id"])
	}
	if err := e.Check(ctx, "ledger:read", Resource{Owner: userID("bank-b", "alice"), Tenant: "bank-b"}); err != nil {
		t.Errorf("Check(own resource) = %v, want nil", err)
	}
}

// TestUnguardedRouteIsRefused shows deny by default for a route someone forgot to guard:
// Guarded names it, and at run time the Audit middleware replaces its answer with a 403.
func TestUnguardedRouteIsRefused(t *testing.T) {
	f := newLedgerFixture(t)
	if err := Guarded(f.router); err != nil {
		t.Fatalf("Guarded(all routes guarded) = %v", err)
	}
	f.router.Post("/v1/forgotten", func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("secret"))
	})
	f.router.Get("/v1/silent", func(w http.ResponseWriter, r *http.Request) {})
	err := Guarded(f.router)
	if err == nil || !strings.Contains(err.Error(), "POST /v1/forgotten") || !strings.Contains(err.Error(), "GET /v1/silent") {
		t.Errorf("Guarded() = %v, want it to name both unguarded routes", err)
	}
	for _, path := range []string{"/v1/forgotten", "/v1/silent"} {
		method := map[string]string{"/v1/forgotten": "POST", "/v1/silent": "GET"}[path]
		f.audit = &lockedBuffer{}
		f.engine.audit = newAuditor(f.audit, f.engine.audit.counter, f.engine.svc)
		rec := f.do(t, method, path, "bank-b/gateway", customer("bank-b", "alice"))
		if rec.Code != http.StatusForbidden || strings.Contains(rec.Body.String(), "secret") {
			t.Errorf("%s: got %d %q, want a 403 without the handler's body", path, rec.Code, rec.Body)
		}
		lines := f.audit.lines(t)
		if len(lines) != 1 || lines[0]["reason"] != ReasonUnguarded || lines[0]["result"] != "deny" {
			t.Errorf("%s: audit lines %v, want one deny %s", path, lines, ReasonUnguarded)
		}
	}
}

// TestRequireRejectsUnknownNames checks that route declarations fail while routes are
// built, not at the first request.
func TestRequireRejectsUnknownNames(t *testing.T) {
	e := newTestEngine(t, "bank-b/ledger")
	for _, tc := range []struct {
		name string
		f    func()
		want string
	}{
		{"misspelt permission", func() { e.Require("ledger:psot") }, `no such permission`},
		{"unknown workload", func() { e.Require("ledger:post", From("bank-b/paymnet")) }, `no such workload`},
		{"service the tenant does not run", func() { e.Require("ledger:post", FromSameTenant("user")) }, `tenant bank-b runs no user`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			defer func() {
				r := recover()
				if s, _ := r.(string); !strings.Contains(s, tc.want) {
					t.Errorf("panic = %v, want it to contain %q", r, tc.want)
				}
			}()
			tc.f()
		})
	}
}

// TestConcurrentRequests runs requests from many goroutines through one engine and router
// (run with -race) and checks that every one produced exactly one audit line.
func TestConcurrentRequests(t *testing.T) {
	f := newLedgerFixture(t)
	const n = 64
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			path := []string{"/v1/accounts/a1/entries", "/v1/accounts/c1/entries"}[i%2]
			req := httptest.NewRequest("GET", path, nil)
			ctx := caller.WithWorkload(req.Context(), workloadID(t, "bank-b/gateway"))
			ctx = caller.WithUser(ctx, customer("bank-b", "alice"))
			f.router.ServeHTTP(httptest.NewRecorder(), req.WithContext(ctx))
		}()
	}
	wg.Wait()
	lines := f.audit.lines(t)
	ids := map[any]bool{}
	results := map[string]int{}
	for _, l := range lines {
		ids[l["decision_id"]] = true
		results[l["result"].(string)+" "+l["reason"].(string)]++
	}
	want := map[string]int{"allow allowed": n / 2, "deny not_owner": n / 2}
	if diff := cmp.Diff(want, results); diff != "" || len(ids) != n {
		t.Errorf("audit lines mismatch (-want +got):\n%s\n%d distinct decision IDs, want %d", diff, len(ids), n)
	}
}

// TestEarlierRefusalStands checks that a layer before the policy (here a stand-in for the
// user-token check) keeps its 401: the guard blocks only successful answers, and the
// refusal is still audited once.
func TestEarlierRefusalStands(t *testing.T) {
	f := newLedgerFixture(t)
	f.router.With(func(http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "no token", http.StatusUnauthorized)
		})
	}, f.engine.Require("ledger:read")).Get("/v1/tokencheck", func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("secret"))
	})
	f.audit = &lockedBuffer{}
	f.engine.audit = newAuditor(f.audit, f.engine.audit.counter, f.engine.svc)
	rec := f.do(t, "GET", "/v1/tokencheck", "bank-b/gateway", customer("bank-b", "alice"))
	if rec.Code != http.StatusUnauthorized || strings.Contains(rec.Body.String(), "secret") {
		t.Errorf("got %d %q, want the earlier 401 to stand", rec.Code, rec.Body)
	}
	lines := f.audit.lines(t)
	if len(lines) != 1 || lines[0]["reason"] != ReasonRefusedEarlier || lines[0]["result"] != "deny" {
		t.Errorf("audit lines %v, want one deny %s", lines, ReasonRefusedEarlier)
	}
}

// TestFromSameTenantResolvesPerTenant builds the same route declaration for each tenant's
// account engine and checks it admits that tenant's user workload and nobody else's: the
// declaration names a role, the topology supplies the tenant.
func TestFromSameTenantResolvesPerTenant(t *testing.T) {
	e := newTestEngine(t, "bank-a/account")
	r := chi.NewRouter()
	r.Use(e.Audit)
	r.With(e.Require("accounts:read", FromSameTenant("user"))).Get("/v1/users/{userID}/accounts", func(w http.ResponseWriter, req *http.Request) {
		w.Write([]byte(`{"accounts":[]}`))
	})
	alice := customer("bank-a", "alice")
	for _, tc := range []struct {
		from string
		want int
	}{
		{"bank-a/user", http.StatusOK},
		{"bank-a/gateway", http.StatusForbidden},
		{"bank-b/payment", http.StatusForbidden},
	} {
		t.Run(tc.from, func(t *testing.T) {
			req := httptest.NewRequest(http.MethodGet, "/v1/users/"+alice.ID.Path()[len("/user/"):]+"/accounts", nil)
			ctx := caller.WithUser(caller.WithWorkload(req.Context(), workloadID(t, tc.from)), alice)
			rec := httptest.NewRecorder()
			r.ServeHTTP(rec, req.WithContext(ctx))
			if rec.Code != tc.want {
				t.Errorf("status = %d, want %d (%s)", rec.Code, tc.want, rec.Body)
			}
		})
	}
}
