// Package authz is the platform's policy decision point: an embedded OPA engine that every
// service asks, per request, whether the caller workload and the end user behind it may
// perform an action on a route and, where a handler loaded one, on a resource.
//
// The policy (Rego) and its permission table (JSON) are compiled into the binary, prepared
// once by New and self-tested against known-allow and known-deny samples before a service
// starts serving; a policy that does not compile, or that allows what it must deny, stops
// the service with a readable error. Evaluation is goroutine-safe and never recompiles.
//
// Routes declare their permission next to the route:
//
//	r.Use(az.Audit)
//	r.With(az.Require("ledger:post", authz.FromSameTenant("payment"))).Post("/v1/postings", h.post)
//
// and handlers that load a resource before deciding call Check and return its error. Every
// request produces exactly one audit line and one increment of
// ztbank_authz_decisions_total.
package authz

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"slices"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/ztbank/ztbank/libs/topology"
)

// ErrPolicy is wrapped by every start-up error caused by the policy itself: it does not
// load, does not compile, or fails its self-test. Services treat it as fatal.
var ErrPolicy = errors.New("authorisation policy rejected")

// Service names the workload an Engine decides for.
type Service struct {
	// Workload is the topology name, "<tenant>/<service>".
	Workload string
	// Tenant is the tenant the workload serves; every user and resource must belong to it.
	Tenant string
	// ID is the workload's own SPIFFE ID, recorded in audit lines.
	ID spiffeid.ID
}

// Decision is the outcome of one policy evaluation. Reason is "allowed" for an allow and
// one of the policy's deny reasons (or "policy_error" when evaluation failed) for a deny.
type Decision struct {
	Allow  bool
	Reason string
}

// ReasonPolicyError is the deny reason recorded when the policy could not be evaluated. The
// engine fails closed: an evaluation error is a deny.
const ReasonPolicyError = "policy_error"

// Engine evaluates the prepared policy. It is safe for concurrent use.
type Engine struct {
	svc         Service
	query       rego.PreparedEvalQuery
	revision    string
	permissions map[string]bool
	rbac        map[string]any
	workloads   map[string]bool
	// tenantWorkloads maps each service of the engine's tenant to its workload name, for
	// FromSameTenant.
	tenantWorkloads map[string]string
	audit           *auditor
	sink            *auditSink // nil unless WithBufferedAuditWriter
	terms           termCache
	now             func() time.Time
	cache           *decisionCache // nil: every decision is evaluated
	// fast is the compiled residual policy (ADR 0980); nil when the policy is outside its
	// fragment or WithoutResidual was given, and then OPA evaluates the full policy.
	fast    *residual
	fastErr error // why fast is nil, for tests
	// policy and data are what the query was prepared from, kept for Bundle.
	policy *policySource
	data   map[string]any
}

type config struct {
	policy       *policySource
	auditW       io.Writer
	bufferAudit  bool
	reg          prometheus.Registerer
	now          func() time.Time
	skipSelfTest bool
	noCache      bool
	noResidual   bool
}

// Option configures New.
type Option func(*config) error

// WithAuditWriter sends audit lines to w instead of standard output. Writes are serialised
// by the engine, so w need not be goroutine-safe.
func WithAuditWriter(w io.Writer) Option {
	return func(c *config) error {
		if w == nil {
			return errors.New("nil audit writer")
		}
		c.auditW = w
		return nil
	}
}

// WithBufferedAuditWriter is WithAuditWriter with the lines buffered in memory and written
// in batches by one goroutine (ADR 1002): no request waits for a write(2), none is dropped
// (a request waits when the buffer is full), and Close writes what is left. Services use it
// and must call Close when they stop.
func WithBufferedAuditWriter(w io.Writer) Option {
	return func(c *config) error {
		if err := WithAuditWriter(w)(c); err != nil {
			return err
		}
		c.bufferAudit = true
		return nil
	}
}

// WithPolicy replaces the embedded policy with the *.rego files and data.json at the root
// of fsys. It exists so tests (and the isolation suite, through OptionsFromEnv) can run a
// service with a deliberately different policy; the self-test still runs.
func WithPolicy(fsys fs.FS) Option {
	return func(c *config) error {
		src, err := loadPolicy(fsys, "override")
		if err != nil {
			return err
		}
		c.policy = src
		return nil
	}
}

// WithRegisterer registers the decision counter on reg instead of the default registerer.
func WithRegisterer(reg prometheus.Registerer) Option {
	return func(c *config) error {
		c.reg = reg
		return nil
	}
}

// WithClock sets the clock used for audit timestamps, so tests can assert exact lines.
func WithClock(now func() time.Time) Option {
	return func(c *config) error {
		c.now = now
		return nil
	}
}

// WithoutDecisionCache evaluates the policy for every decision, even for an input seen
// before. Benchmarks use it to measure evaluation itself.
func WithoutDecisionCache() Option {
	return func(c *config) error {
		c.noCache = true
		return nil
	}
}

// WithoutResidual evaluates the full policy with OPA for every decision instead of the
// compiled residual policy. Benchmarks and the equivalence tests use it as the reference.
func WithoutResidual() Option {
	return func(c *config) error {
		c.noResidual = true
		return nil
	}
}

// WithoutSelfTest skips the start-up self-test. It is for tests only: the isolation suite
// uses it (through OptionsFromEnv) to prove that it notices a policy that leaks across
// tenants, which the self-test would otherwise refuse to start.
func WithoutSelfTest() Option {
	return func(c *config) error {
		c.skipSelfTest = true
		return nil
	}
}

// New loads, compiles and prepares the policy once, loads the topology and the permission
// table as data, and self-tests the result. Any failure wraps ErrPolicy and names the file,
// line or sample at fault.
func New(ctx context.Context, svc Service, topo *topology.Topology, opts ...Option) (*Engine, error) {
	if topo == nil {
		return nil, errors.New("authz: nil topology")
	}
	w, ok := topo.Workload(svc.Workload)
	switch {
	case !ok:
		return nil, fmt.Errorf("authz: workload %q is not in the topology", svc.Workload)
	case svc.Tenant == "" || w.Tenant != svc.Tenant:
		return nil, fmt.Errorf("authz: workload %q serves tenant %q, not %q", svc.Workload, w.Tenant, svc.Tenant)
	case !svc.ID.IsZero() && svc.ID != w.ID:
		return nil, fmt.Errorf("authz: workload %q has SPIFFE ID %s in the topology, not %s", svc.Workload, w.ID, svc.ID)
	}
	if svc.ID.IsZero() {
		svc.ID = w.ID
	}

	cfg := config{auditW: os.Stdout, reg: prometheus.DefaultRegisterer, now: time.Now}
	for _, o := range opts {
		if err := o(&cfg); err != nil {
			return nil, fmt.Errorf("authz: %w", err)
		}
	}
	if cfg.policy == nil {
		src, err := loadPolicy(embedded, "embedded")
		if err != nil {
			return nil, err
		}
		cfg.policy = src
	}

	data, err := cfg.policy.document(svc, topo)
	if err != nil {
		return nil, err
	}
	pq, err := prepare(ctx, cfg.policy, data)
	if err != nil {
		return nil, err
	}
	counter, err := decisionCounter(cfg.reg)
	if err != nil {
		return nil, fmt.Errorf("authz: %w", err)
	}
	e := &Engine{
		svc:         svc,
		query:       pq,
		revision:    cfg.policy.revision,
		permissions: cfg.policy.permissions,
		rbac:        cfg.policy.rbac(),
		workloads:   map[string]bool{},
		audit:       newAuditor(cfg.auditW, counter, svc),
		now:         cfg.now,
		policy:      cfg.policy,
		data:        data,
	}
	if cfg.noResidual {
		e.fastErr = errors.New("WithoutResidual")
	} else {
		e.fast, e.fastErr = compileResidual(ctx, cfg.policy, data)
	}
	// The memo pays only where evaluation costs more than building its key, which is not
	// the case for the compiled residual.
	if ok, _ := deterministic(cfg.policy.modules); ok && !cfg.noCache && e.fast == nil {
		e.cache = newDecisionCache()
	}
	e.terms = termCache{}
	e.terms.add("", RoleCustomer, RoleStaff, svc.Tenant)
	e.terms.add(http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete)
	e.terms.add(e.Permissions()...)
	e.tenantWorkloads = map[string]string{}
	for _, w := range topo.Workloads {
		e.workloads[w.Name] = true
		if w.Tenant == svc.Tenant {
			e.tenantWorkloads[w.Service] = w.Name
		}
		e.terms.add(w.Name, w.ID.String())
	}
	for _, t := range topo.Tenants {
		e.terms.add(t.Name)
	}
	if e.fast != nil {
		if err := e.checkResidual(ctx, topo); err != nil {
			return nil, err
		}
	}
	if !cfg.skipSelfTest {
		if err := e.selfTest(ctx, topo); err != nil {
			return nil, err
		}
	}
	// The zero-trust-off reference build writes no lines; its engines start no writer, so
	// its idle ticks do not slow the reference that tools/pathbench measures against.
	if cfg.bufferAudit && !benchOff {
		waits, err := auditWaitCounter(cfg.reg)
		if err != nil {
			return nil, fmt.Errorf("authz: %w", err)
		}
		e.sink = newAuditSink(cfg.auditW, auditFlushInterval, auditFlushAt, auditQueueLimit, waits.WithLabelValues(svc.Workload))
		e.audit = newAuditor(e.sink, counter, svc)
	}
	return e, nil
}

// Close writes the audit lines still buffered (WithBufferedAuditWriter) and stops the
// writer; lines audited after it are written synchronously. Without buffering it does
// nothing. It is safe to call more than once.
func (e *Engine) Close() {
	if e.sink != nil {
		e.sink.Close()
	}
}

// Revision identifies the policy and permission table in force: a digest of the policy
// files, recorded in every audit line so a decision can be traced to the policy that made it.
func (e *Engine) Revision() string { return e.revision }

// Service returns the workload the engine decides for.
func (e *Engine) Service() Service { return e.svc }

// Decide evaluates the policy for in. It fails closed: when evaluation fails the decision
// is a deny with reason ReasonPolicyError. It writes no audit line; Require, Check and the
// Audit middleware do.
func (e *Engine) Decide(ctx context.Context, in Input) Decision {
	d, _ := e.decide(ctx, in)
	return d
}

func (e *Engine) decide(ctx context.Context, in Input) (Decision, error) {
	if e.fast != nil {
		return e.fast.decide(&in), nil
	}
	v := in.value(e.terms)
	var key string
	if e.cache != nil {
		key = v.String()
		if d, ok := e.cache.get(key); ok {
			return d, nil
		}
	}
	d, err := e.evaluate(ctx, v)
	if err == nil && e.cache != nil {
		e.cache.put(key, d)
	}
	return d, err
}

// evaluate runs the prepared query on one input.
func (e *Engine) evaluate(ctx context.Context, v ast.Value) (Decision, error) {
	rs, err := e.query.Eval(ctx, rego.EvalParsedInput(v))
	if err != nil {
		return Decision{Reason: ReasonPolicyError}, fmt.Errorf("evaluate policy: %w", err)
	}
	if len(rs) != 1 || len(rs[0].Expressions) != 1 {
		return Decision{Reason: ReasonPolicyError}, errors.New("evaluate policy: decision is undefined")
	}
	m, ok := rs[0].Expressions[0].Value.(map[string]any)
	if !ok {
		return Decision{Reason: ReasonPolicyError}, fmt.Errorf("evaluate policy: decision is %T, not an object", rs[0].Expressions[0].Value)
	}
	allow, okA := m["allow"].(bool)
	reason, okR := m["reason"].(string)
	if !okA || !okR || reason == "" {
		return Decision{Reason: ReasonPolicyError}, fmt.Errorf("evaluate policy: malformed decision %v", m)
	}
	return Decision{Allow: allow, Reason: reason}, nil
}

// knownPermission reports whether the permission table declares perm.
func (e *Engine) knownPermission(perm string) bool { return e.permissions[perm] }

// Permissions returns the permission names the loaded table declares, sorted.
func (e *Engine) Permissions() []string {
	var out []string
	for p := range e.permissions {
		out = append(out, p)
	}
	slices.Sort(out)
	return out
}
