package authz

import (
	"context"
	"errors"
	"io"
	"log/slog"
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
	log     *slog.Logger
	counter *prometheus.CounterVec
	svc     Service
}

func newAuditor(w io.Writer, counter *prometheus.CounterVec, svc Service) *auditor {
	return &auditor{
		// slog's JSON handler serialises writes to w, so concurrent requests never
		// interleave lines.
		log:     slog.New(slog.NewJSONHandler(w, nil)),
		counter: counter,
		svc:     svc,
	}
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
	traceID  string
	spanID   string
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
		r.traceID, r.spanID = sc.TraceID().String(), sc.SpanID().String()
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
	defer r.mu.Unlock()
	if r.traceID == "" {
		if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
			r.traceID, r.spanID = sc.TraceID().String(), sc.SpanID().String()
		}
	}
	result := "deny"
	if r.d.Allow {
		result = "allow"
	}
	in := &r.in
	attrs := make([]slog.Attr, 0, 24)
	attrs = append(attrs,
		slog.String("decision_id", r.id),
		slog.String("service", a.svc.Workload),
		slog.String("service_id", a.svc.ID.String()),
		slog.String("tenant", a.svc.Tenant),
		slog.String("caller_workload", idString(in.Caller)),
		slog.String("user", idString(in.User)),
		slog.String("user_tenant", in.Tenant),
		slog.Any("roles", nonNil(in.Roles)),
		slog.String("action", in.Action),
		slog.String("method", in.Method),
		slog.String("route", in.Route),
	)
	if len(in.Params) > 0 {
		params := make([]any, 0, len(in.Params))
		for _, k := range sortedKeys(in.Params) {
			params = append(params, slog.String(k, in.Params[k]))
		}
		attrs = append(attrs, slog.Group("params", params...))
	}
	if res := in.Resource; res != nil {
		attrs = append(attrs, slog.Group("resource",
			slog.String("kind", res.Kind),
			slog.String("id", res.ID),
			slog.String("owner", idString(res.Owner)),
			slog.String("tenant", res.Tenant),
		))
	}
	attrs = append(attrs,
		slog.String("result", result),
		slog.String("reason", r.d.Reason),
		slog.String("policy_revision", e.revision),
		slog.String("trace_id", r.traceID),
		slog.String("span_id", r.spanID),
	)
	if r.status != 0 {
		attrs = append(attrs, slog.Int("status", r.status))
	}
	if r.err != nil {
		attrs = append(attrs, slog.String("error", r.err.Error()))
	}
	rec := slog.NewRecord(e.now(), slog.LevelInfo, "authz decision", 0)
	rec.AddAttrs(attrs...)
	_ = a.log.Handler().Handle(ctx, rec) // an audit writer failure must not fail the request
	a.counter.WithLabelValues(a.svc.Workload, result, r.d.Reason).Inc()
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
