package authz

import (
	"context"
	"errors"
	"io"
	"sync"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"

	"github.com/ztbank/ztbank/libs/telemetry"
)

// Deny reasons the engine records without evaluating the policy, because there was nothing
// for it to decide.
const (
	// ReasonNoRoute is recorded for requests that matched no route (404/405).
	ReasonNoRoute = "no_route"
	// ReasonUnguarded is recorded, and the response replaced by a 403, when a handler tried
	// to answer without any Require or Check having decided: a route someone forgot to guard.
	ReasonUnguarded = "unguarded_route"
	// ReasonRefusedEarlier is recorded when a layer before the policy (the user-token
	// check, say) already refused the request with an error status; the refusal stands and
	// is audited, since a 401 must not turn into a 403.
	ReasonRefusedEarlier = "refused_before_policy"
)

// decisionCounter returns ztbank_authz_decisions_total, reusing an already registered one so
// several engines in one process (tests, or a binary serving two workloads) share it.
func decisionCounter(reg prometheus.Registerer) (*prometheus.CounterVec, error) {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "ztbank_authz_decisions_total",
		Help: "Authorisation decisions, one per request, by service workload, result and reason.",
	}, []string{"service", "result", "reason"})
	return registerCounter(reg, c)
}

// auditWaitCounter returns ztbank_authz_audit_waits_total, shared like the decision counter.
func auditWaitCounter(reg prometheus.Registerer) (*prometheus.CounterVec, error) {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "ztbank_authz_audit_waits_total",
		Help: "Requests that waited for room in the full audit buffer (ADR 1002): the audit output is not keeping up.",
	}, []string{"service"})
	return registerCounter(reg, c)
}

// registerCounter registers c on reg, or returns the counter already registered under its
// name, so several engines in one process share it. A nil reg registers nothing.
func registerCounter(reg prometheus.Registerer, c *prometheus.CounterVec) (*prometheus.CounterVec, error) {
	if reg == nil {
		return c, nil
	}
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(*prometheus.CounterVec); ok {
				return existing, nil
			}
		}
		return nil, err
	}
	return c, nil
}

// auditor writes audit lines and counts decisions.
type auditor struct {
	out     io.Writer // takes each line in one Write: the auditSink, or a lockedWriter around the given writer
	counter *prometheus.CounterVec
	svc     Service
}

func newAuditor(w io.Writer, counter *prometheus.CounterVec, svc Service) *auditor {
	if _, ok := w.(*auditSink); !ok {
		// Concurrent requests must never interleave lines, and w need not be goroutine-safe.
		w = &lockedWriter{w: w}
	}
	return &auditor{out: w, counter: counter, svc: svc}
}

// lockedWriter serialises writes to w.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// record is one request's decision as it will be audited. Require and Check update it;
// the Audit middleware writes it once when the request ends. When several decisions are
// taken for one request, the first deny wins and otherwise the last allow, so the line
// names what actually decided the outcome.
type record struct {
	mu       sync.Mutex
	id       string
	decided  bool
	in       Input
	d        Decision
	err      error
	span     trace.SpanContext // the request's, for the line's trace_id and span_id
	route    routeOptions
	hasRoute bool
	status   int
}

func newRecord() *record { return &record{id: uuid.NewString()} }

type recordKey struct{}

func recordFrom(ctx context.Context) *record {
	r, _ := ctx.Value(recordKey{}).(*record)
	return r
}

// update merges one decision into the record and returns the request's decision ID.
func (r *record) update(ctx context.Context, in Input, d Decision, err error) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.decided || r.d.Allow {
		r.decided, r.in, r.d, r.err = true, in, d, err
		// The request's span carries the deciding decision, as the audit line does.
		telemetry.AnnotateDecision(ctx, r.id, d.Allow, d.Reason)
	}
	// The context closest to the handler carries the request's span even when the tracing
	// middleware sits inside the Audit middleware.
	if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
		r.span = sc
	}
	return r.id
}

func (r *record) isDecided() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.decided
}

// write emits the audit line and counts the decision. It is called exactly once per record.
func (a *auditor) write(ctx context.Context, e *Engine, r *record) {
	r.mu.Lock()
	if !r.span.IsValid() {
		if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
			r.span = sc
		}
	}
	lb := lineBufs.Get().(*lineBuf)
	lb.b = a.appendLine(lb.b[:0], e, r, e.now())
	allow, reason := r.d.Allow, r.d.Reason
	r.mu.Unlock()
	_, _ = a.out.Write(lb.b) // an audit writer failure must not fail the request
	if cap(lb.b) <= maxPooledLine {
		lineBufs.Put(lb)
	}
	result := "deny"
	if allow {
		result = "allow"
	}
	a.counter.WithLabelValues(a.svc.Workload, result, reason).Inc()
}
