package telemetry

import (
	"context"
	"encoding/binary"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/ztbank/ztbank/libs/caller"
)

// Span attribute keys for what the platform proved about a request. They are ours, not
// semantic conventions, so they carry the ztbank prefix.
const (
	AttrWorkload       = "ztbank.workload"          // this process's topology workload
	AttrCaller         = "ztbank.caller.spiffe_id"  // peer workload proven by mTLS or the mesh
	AttrUser           = "ztbank.user.spiffe_id"    // user of a verified internal JWT
	AttrTenant         = "ztbank.tenant"            // that user's tenant
	AttrPeer           = "ztbank.peer.workload"     // workload a client span calls
	AttrDecisionID     = "ztbank.authz.decision_id" // ID in the audit line and the 403 body
	AttrDecisionResult = "ztbank.authz.result"      // allow or deny
	AttrDecisionReason = "ztbank.authz.reason"      // the policy's reason code
	AttrLinkKind       = "ztbank.link.kind"         // why a span links to another trace
)

// unmatchedRoute labels requests no route matched, so scanners probing random paths cannot
// grow the metric's label set.
const unmatchedRoute = "unmatched"

// Option configures the middleware, the client wrapper and the pgx tracer.
type Option func(*options)

type options struct {
	tp        trace.TracerProvider
	prop      propagation.TextMapPropagator
	reg       prometheus.Registerer
	untrusted bool
}

// UntrustedCallers makes Server treat the caller's trace context as a client's claim, for
// the edge's public listener: every request starts a trace of its own (the platform, not
// the client, picks the trace ID written into every hop's log and audit lines, and decides
// whether it is recorded), a valid client traceparent is kept only as a link on the server
// span, and the client's traceparent, tracestate and baggage headers are removed from the
// request so nothing relays them inward.
func UntrustedCallers() Option {
	return func(o *options) { o.untrusted = true }
}

// clientTraceHeaders are the W3C trace-context and baggage headers a client may send.
var clientTraceHeaders = []string{"Traceparent", "Tracestate", "Baggage"}

// WithTracerProvider uses tp instead of the global provider Setup installs (tests pass one
// with an in-memory exporter).
func WithTracerProvider(tp trace.TracerProvider) Option {
	return func(o *options) { o.tp = tp }
}

// WithPropagator uses p instead of the global propagator.
func WithPropagator(p propagation.TextMapPropagator) Option {
	return func(o *options) { o.prop = p }
}

// WithRegisterer registers the HTTP metrics on reg instead of the default registry that
// the health port's /metrics serves.
func WithRegisterer(reg prometheus.Registerer) Option {
	return func(o *options) { o.reg = reg }
}

func newOptions(opts []Option) options {
	o := options{reg: prometheus.DefaultRegisterer}
	for _, f := range opts {
		f(&o)
	}
	return o
}

// tracer resolves the provider at call time: the global one delegates to whatever Setup
// installs later, so middleware built before Setup still traces.
func (o options) tracer() trace.Tracer {
	if o.tp != nil {
		return o.tp.Tracer(ScopeName)
	}
	return otel.Tracer(ScopeName)
}

func (o options) propagator() propagation.TextMapPropagator {
	if o.prop != nil {
		return o.prop
	}
	return otel.GetTextMapPropagator()
}

// httpMetrics are the platform's request metrics.
type httpMetrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

func newHTTPMetrics(reg prometheus.Registerer) httpMetrics {
	m := httpMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: MetricHTTPRequests,
			Help: "HTTP requests served on the API port, by chi route pattern, method and status.",
		}, []string{"route", "method", "status"}),
		// Buckets start at half a millisecond: a hop here costs well under the 0.23 ms a
		// sidecar pair adds, and default buckets would put every request in the first one.
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    MetricHTTPDuration,
			Help:    "Time to serve an HTTP request on the API port, by chi route pattern and method.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"route", "method"}),
	}
	m.requests = Register(reg, m.requests)
	m.duration = Register(reg, m.duration)
	return m
}

// Server returns middleware that continues the caller's trace (W3C traceparent) with a
// server span per request and counts the request in ztbank_http_requests_total and
// ztbank_http_request_duration_seconds. Place it first, so requests the identity check or
// the body limit refuses are traced and counted too; the span is named by chi's route
// pattern, known once routing is done. Identity attributes are added by Annotate.
func Server(opts ...Option) func(http.Handler) http.Handler {
	o := newOptions(opts)
	m := newHTTPMetrics(o.reg)
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			start := time.Now()
			startOpts := []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindServer),
				trace.WithAttributes(attribute.String("http.request.method", r.Method))}
			ctx := r.Context()
			if o.untrusted {
				client := trace.SpanContextFromContext(propagation.TraceContext{}.Extract(context.Background(), propagation.HeaderCarrier(r.Header)))
				if client.IsValid() {
					startOpts = append(startOpts, trace.WithLinks(trace.Link{SpanContext: client,
						Attributes: []attribute.KeyValue{attribute.String(AttrLinkKind, "client traceparent")}}))
				}
				for _, h := range clientTraceHeaders {
					r.Header.Del(h)
				}
				// Drop any span context already in ctx too: this hop is the trace's root.
				ctx = trace.ContextWithSpanContext(ctx, trace.SpanContext{})
				startOpts = append(startOpts, trace.WithNewRoot())
			} else {
				ctx = o.propagator().Extract(ctx, propagation.HeaderCarrier(r.Header))
			}
			ctx, span := o.tracer().Start(ctx, r.Method, startOpts...)
			defer span.End()
			if !span.IsRecording() {
				ctx = trace.ContextWithSpanContext(ctx, passThrough(span.SpanContext()))
			}
			ww := middleware.NewWrapResponseWriter(w, r.ProtoMajor)
			inner := r.WithContext(ctx)
			next.ServeHTTP(ww, inner)

			route := unmatchedRoute
			if rc := chi.RouteContext(r.Context()); rc != nil && rc.RoutePattern() != "" {
				route = rc.RoutePattern()
			} else if inner.Pattern != "" {
				// A net/http ServeMux (the edge's) records the pattern it matched on the request.
				route = strings.TrimPrefix(inner.Pattern, r.Method+" ")
			}
			status := ww.Status()
			if status == 0 {
				status = http.StatusOK // what net/http sends for a handler that wrote nothing
			}
			span.SetName(r.Method + " " + route)
			span.SetAttributes(attribute.String("http.route", route), attribute.Int("http.response.status_code", status))
			if status >= 500 {
				span.SetStatus(codes.Error, http.StatusText(status))
			}
			m.requests.WithLabelValues(route, r.Method, strconv.Itoa(status)).Inc()
			m.duration.WithLabelValues(route, r.Method).Observe(time.Since(start).Seconds())
		})
	}
}

// passThrough gives a request that is not recorded (no collector configured) IDs of its
// own, so its log and audit lines still carry a trace ID that joins them to the other
// hops' lines, and its calls carry a traceparent naming this hop. It keeps the caller's
// trace ID and sampling flag. A request that arrived without one is marked sampled: the
// decision is left to the next hop that records, rather than silently dropping the
// traces of services that do have a collector.
func passThrough(parent trace.SpanContext) trace.SpanContext {
	cfg := trace.SpanContextConfig{TraceID: parent.TraceID(), TraceFlags: parent.TraceFlags(), TraceState: parent.TraceState()}
	if !parent.IsValid() {
		binary.BigEndian.PutUint64(cfg.TraceID[:8], rand.Uint64())
		binary.BigEndian.PutUint64(cfg.TraceID[8:], rand.Uint64()|1) // never all zero
		cfg.TraceFlags = trace.FlagsSampled
	}
	binary.BigEndian.PutUint64(cfg.SpanID[:], rand.Uint64()|1)
	return trace.NewSpanContext(cfg)
}

// Annotate is middleware that copies the identity proven so far (caller workload, and the
// user and tenant once an internal JWT is verified) onto the request's span. Put it after
// each middleware that establishes identity; setting an attribute twice keeps the last.
func Annotate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		AnnotateIdentity(r.Context())
		next.ServeHTTP(w, r)
	})
}

// AnnotateIdentity adds the caller identity in ctx to ctx's span.
func AnnotateIdentity(ctx context.Context) {
	span := trace.SpanFromContext(ctx)
	if !span.IsRecording() {
		return
	}
	id := caller.From(ctx)
	if !id.Workload.IsZero() {
		span.SetAttributes(attribute.String(AttrCaller, id.Workload.String()))
	}
	if id.HasUser() {
		span.SetAttributes(attribute.String(AttrUser, id.User.ID.String()), attribute.String(AttrTenant, id.User.Tenant))
	}
}

// AnnotateDecision records an authorisation decision on ctx's span: its ID (the one in the
// audit line and the 403 body), allow or deny, and the reason code. The authorisation
// engine calls it where it decides; the policy's reasoning beyond the code stays in the
// audit log.
func AnnotateDecision(ctx context.Context, decisionID string, allowed bool, reason string) {
	span := trace.SpanFromContext(ctx)
	if !span.IsRecording() {
		return
	}
	result := "deny"
	if allowed {
		result = "allow"
	}
	span.SetAttributes(attribute.String(AttrDecisionID, decisionID), attribute.String(AttrDecisionResult, result),
		attribute.String(AttrDecisionReason, reason))
}
