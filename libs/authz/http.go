package authz

import (
	"context"
	"fmt"
	"net/http"
	"reflect"
	"slices"
	"strings"

	"github.com/go-chi/chi/v5"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/ztbank/ztbank/libs/caller"
	"github.com/ztbank/ztbank/libs/problem"
)

// RouteOption refines a route's authorisation in Require.
type RouteOption func(*routeOptions)

type routeOptions struct {
	from         []string
	sameTenant   []string // services, resolved to workloads of the engine's tenant by Require
	workloadOnly bool
}

// From restricts a route to the named workloads, on top of the topology's service-wide
// allowlist. Without it any workload the topology lets call the service may call the route.
// It names platform workloads ("edge", "emissary-ingress"); a tenant's own workloads are
// named by role with FromSameTenant, so no route names a tenant.
func From(workloads ...string) RouteOption {
	return func(o *routeOptions) { o.from = append(o.from, workloads...) }
}

// FromSameTenant restricts a route to the named services of the engine's own tenant, e.g.
// FromSameTenant("payment") on the ledger admits only its tenant's payment workload. Require
// resolves the services against the topology once, when the routes are built, so the same
// binary serves whichever tenant its workload identity belongs to; a service the tenant does
// not run stops start-up (the topology's catalogue check rules that out for valid files).
func FromSameTenant(services ...string) RouteOption {
	return func(o *routeOptions) { o.sameTenant = append(o.sameTenant, services...) }
}

// WorkloadOnly marks an internal route that takes no end user: the calling workload alone
// is authorised, and only for permissions the permission table grants to workloads. A user
// that is present is still checked.
func WorkloadOnly() RouteOption {
	return func(o *routeOptions) { o.workloadOnly = true }
}

// Audit is the router-level middleware (r.Use(az.Audit)) that makes every request produce
// exactly one audit line, allowed or denied, written when the request ends. It also keeps
// deny-by-default for routes someone forgot to guard: a handler that answers without any
// Require or Check having decided gets its response replaced by a 403, audited as
// ReasonUnguarded. Requests that match no route keep their 404/405 and are audited as
// ReasonNoRoute.
func (e *Engine) Audit(next http.Handler) http.Handler {
	if benchOff {
		return next // no audit in tools/pathbench's zero-trust-off reference build
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := newRecord()
		ctx := context.WithValue(r.Context(), recordKey{}, rec)
		r = r.WithContext(ctx)
		gw := &guardWriter{ResponseWriter: w, e: e, rec: rec, r: r}
		returned := false
		defer func() {
			// Runs while a handler panics too, so a crashing request is still audited; the
			// response is then left to the recovering middleware outside.
			switch {
			case !returned:
				if !rec.isDecided() {
					e.recordWithoutPolicy(r, rec, ReasonUnguarded)
				}
				gw.status = http.StatusInternalServerError
			case !gw.wroteHeader && !rec.isDecided():
				gw.refuse() // nothing was sent, so an undecided request is still refusable
			case !gw.wroteHeader:
				gw.status = http.StatusOK // what net/http sends for a handler that wrote nothing
			}
			rec.mu.Lock()
			rec.status = gw.status
			rec.mu.Unlock()
			e.audit.write(ctx, e, rec)
		}()
		next.ServeHTTP(gw, r)
		returned = true
	})
}

// guardWriter passes the response through once a decision exists and blocks it otherwise.
type guardWriter struct {
	http.ResponseWriter
	e           *Engine
	rec         *record
	r           *http.Request
	wroteHeader bool
	blocked     bool
	status      int
}

func (g *guardWriter) WriteHeader(code int) {
	if g.wroteHeader {
		return
	}
	if !g.rec.isDecided() {
		switch {
		case code == http.StatusNotFound || code == http.StatusMethodNotAllowed:
			g.e.recordWithoutPolicy(g.r, g.rec, ReasonNoRoute)
		case code >= http.StatusBadRequest:
			// Refusing is always allowed without a decision; only success needs one.
			g.e.recordWithoutPolicy(g.r, g.rec, ReasonRefusedEarlier)
		default:
			g.refuse()
			return
		}
	}
	g.wroteHeader, g.status = true, code
	g.ResponseWriter.WriteHeader(code)
}

func (g *guardWriter) Write(b []byte) (int, error) {
	if !g.wroteHeader {
		g.WriteHeader(http.StatusOK)
	}
	if g.blocked {
		return len(b), nil // the handler's body is discarded; the client got the 403
	}
	return g.ResponseWriter.Write(b)
}

// refuse answers 403 for a request that reached a handler without a decision.
func (g *guardWriter) refuse() {
	if !g.rec.isDecided() {
		g.e.recordWithoutPolicy(g.r, g.rec, ReasonUnguarded)
	}
	g.wroteHeader, g.blocked, g.status = true, true, http.StatusForbidden
	problem.Write(g.ResponseWriter, g.r, g.e.denied(g.rec.id))
}

// Unwrap lets http.ResponseController reach the underlying writer (flush, deadlines).
func (g *guardWriter) Unwrap() http.ResponseWriter { return g.ResponseWriter }

// recordWithoutPolicy records a deny for a request the policy had nothing to decide about.
func (e *Engine) recordWithoutPolicy(r *http.Request, rec *record, reason string) {
	in := e.inputFrom(r.Context(), "", routeOptions{})
	in.Method = r.Method
	rec.update(r.Context(), in, Decision{Reason: reason}, nil)
}

// Require returns middleware that authorises the route for perm before the handler runs.
// Use it per route, inside r.With(...), where chi has already matched the route pattern:
//
//	r.With(az.Require("accounts:read")).Get("/v1/accounts/{accountID}", h.account)
//
// A denied request is answered 403 problem+json carrying the decision ID and nothing else
// of the decision. Require panics when perm is not in the permission table, so a misspelt
// permission stops the service while its routes are being built, not at the first request.
func (e *Engine) Require(perm string, opts ...RouteOption) func(http.Handler) http.Handler {
	if !e.knownPermission(perm) {
		panic(fmt.Sprintf("authz: Require(%q): no such permission in the policy's %s (have %s)",
			perm, DataFile, strings.Join(e.Permissions(), ", ")))
	}
	var ro routeOptions
	for _, o := range opts {
		o(&ro)
	}
	for _, svc := range ro.sameTenant {
		w, ok := e.tenantWorkloads[svc]
		if !ok {
			panic(fmt.Sprintf("authz: Require(%q, FromSameTenant(%q)): tenant %s runs no %s in the topology", perm, svc, e.svc.Tenant, svc))
		}
		ro.from = append(ro.from, w)
	}
	ro.sameTenant = nil
	for _, w := range ro.from {
		if !e.workloads[w] {
			panic(fmt.Sprintf("authz: Require(%q, From(%q)): no such workload in the topology", perm, w))
		}
	}
	g := &guard{e: e, perm: perm, opts: ro}
	return g.middleware
}

// guard is one route's Require. Its middleware method is what Guarded looks for.
type guard struct {
	e    *Engine
	perm string
	opts routeOptions
}

// middleware returns a named handler type rather than a closure so RoutePermissions can read
// the permission back from a built route without serving a request.
func (g *guard) middleware(next http.Handler) http.Handler {
	return &guardedHandler{g: g, next: next}
}

// guardedHandler is a route's handler behind its Require.
type guardedHandler struct {
	g    *guard
	next http.Handler
}

func (h *guardedHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if benchOff {
		h.next.ServeHTTP(w, r) // no policy in the zero-trust-off reference build
		return
	}
	g := h.g
	ctx := r.Context()
	in := g.e.inputFrom(ctx, g.perm, g.opts)
	if rec := recordFrom(ctx); rec != nil {
		rec.mu.Lock()
		rec.route, rec.hasRoute = g.opts, true
		rec.mu.Unlock()
	}
	if err := g.e.enforce(ctx, in); err != nil {
		problem.Write(w, r, err)
		return
	}
	h.next.ServeHTTP(w, r)
}

// Check decides perm on a resource the handler has loaded, for the request in ctx. It
// inherits the route's From and WorkloadOnly options from Require. A deny returns an error
// that wraps problem.ErrForbidden and carries the decision ID, so a handler just returns it:
//
//	if err := az.Check(ctx, "accounts:read", authz.Resource{Kind: "account", ID: a.ID, Owner: a.Owner, Tenant: a.Tenant}); err != nil {
//		return err
//	}
func (e *Engine) Check(ctx context.Context, perm string, res Resource) error {
	if benchOff {
		return nil
	}
	var ro routeOptions
	if rec := recordFrom(ctx); rec != nil {
		rec.mu.Lock()
		ro = rec.route
		rec.mu.Unlock()
	}
	in := e.inputFrom(ctx, perm, ro)
	in.Resource = &res
	return e.enforce(ctx, in)
}

// enforce decides, records the decision for the audit line and returns the deny error.
// Without the Audit middleware (a background job, a unit test) the line is written at once.
func (e *Engine) enforce(ctx context.Context, in Input) error {
	d, err := e.decide(ctx, in)
	rec := recordFrom(ctx)
	standalone := rec == nil
	if standalone {
		rec = newRecord()
	}
	id := rec.update(ctx, in, d, err)
	if standalone {
		e.audit.write(ctx, e, rec)
	}
	if d.Allow {
		return nil
	}
	return e.denied(id)
}

// denied is the error clients see: the policy's refusal mark, the category and the decision
// ID, which an operator can look up in the audit log, and nothing of the policy's reasoning.
func (e *Engine) denied(id string) error {
	return problem.Refuse(problem.TypePolicy, problem.ErrForbidden, "the request was not authorised", map[string]any{"decision_id": id})
}

// inputFrom builds the policy input from the request context: the proven caller identity,
// and chi's route pattern and path parameters.
func (e *Engine) inputFrom(ctx context.Context, perm string, ro routeOptions) Input {
	id := caller.From(ctx)
	in := Input{
		Caller:       id.Workload,
		User:         id.User.ID,
		Tenant:       id.User.Tenant,
		Roles:        id.User.Roles,
		Action:       perm,
		From:         ro.from,
		WorkloadOnly: ro.workloadOnly,
	}
	if rc := chi.RouteContext(ctx); rc != nil {
		in.Method = rc.RouteMethod
		in.Route = rc.RoutePattern()
		if n := len(rc.URLParams.Keys); n > 0 {
			in.Params = make(map[string]string, n)
			for i, k := range rc.URLParams.Keys {
				// chi records "*" for mounted sub-routers; it is not a parameter of the route.
				if k != "*" && i < len(rc.URLParams.Values) {
					in.Params[k] = rc.URLParams.Values[i]
				}
			}
		}
	}
	return in
}

// guardCode identifies Require's middleware among a route's middlewares. All method values
// of (*guard).middleware share this code pointer.
var guardCode = reflect.ValueOf((&guard{}).middleware).Pointer()

// Guarded reports every route of router that carries no Require. Each service's tests call
// it on the service's real router, so a route added without authorisation fails the build
// rather than relying on the Audit middleware's run-time refusal.
func Guarded(router chi.Routes) error {
	var missing []string
	err := chi.Walk(router, func(method, route string, _ http.Handler, mws ...func(http.Handler) http.Handler) error {
		if !slices.ContainsFunc(mws, func(mw func(http.Handler) http.Handler) bool {
			return reflect.ValueOf(mw).Pointer() == guardCode
		}) {
			missing = append(missing, method+" "+route)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("walk routes: %w", err)
	}
	if len(missing) > 0 {
		slices.Sort(missing)
		return fmt.Errorf("authz: routes without Require: %s", strings.Join(missing, ", "))
	}
	return nil
}

func idString(id spiffeid.ID) string {
	if id.IsZero() {
		return ""
	}
	return id.String()
}
