package telemetry

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/baggage"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// TestUntrustedCallersStartTheirOwnTrace: on the edge's public listener a client's
// traceparent does not choose the trace ID (which every hop writes into its audit lines),
// cannot switch recording off (flags 00), and its baggage is neither put in the context nor
// left in the headers the proxy relays; a valid client traceparent survives only as a link.
// Without the option (every other listener, whose callers are workloads) the caller's trace
// is continued, as before.
func TestUntrustedCallersStartTheirOwnTrace(t *testing.T) {
	const clientTrace, clientSpan = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
	type seen struct {
		ClientTrace   bool // the request's trace ID is the client's
		Recording     bool
		Sampled       bool
		Baggage       int
		HeadersLeft   []string
		LinkedToTrace string
	}
	serve := func(t *testing.T, tp trace.TracerProvider, exp *tracetest.InMemoryExporter, flags string, opts ...Option) seen {
		var got seen
		h := Server(append([]Option{WithTracerProvider(tp), WithPropagator(w3c), WithRegisterer(prometheus.NewRegistry())}, opts...)...)(
			http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				sc := trace.SpanContextFromContext(r.Context())
				got.ClientTrace = sc.TraceID().String() == clientTrace
				got.Recording = trace.SpanFromContext(r.Context()).IsRecording()
				got.Sampled = sc.IsSampled()
				got.Baggage = baggage.FromContext(r.Context()).Len()
				for _, k := range []string{"Traceparent", "Tracestate", "Baggage"} {
					if r.Header.Get(k) != "" {
						got.HeadersLeft = append(got.HeadersLeft, k)
					}
				}
			}))
		req := httptest.NewRequest(http.MethodGet, "/bank-a/v1/users/me", nil)
		req.Header.Set("Traceparent", "00-"+clientTrace+"-"+clientSpan+"-"+flags)
		req.Header.Set("Tracestate", "vendor=x")
		req.Header.Set("Baggage", "tenant=bank-b,role=staff")
		h.ServeHTTP(httptest.NewRecorder(), req)
		if exp != nil {
			for _, s := range exp.GetSpans() {
				for _, l := range s.Links {
					got.LinkedToTrace = l.SpanContext.TraceID().String()
				}
			}
		}
		return got
	}
	for _, tc := range []struct {
		name  string
		flags string
		noop  bool
		opts  []Option
		want  seen
	}{
		{"edge: client asks not to record", "00", false, []Option{UntrustedCallers()},
			seen{ClientTrace: false, Recording: true, Sampled: true, LinkedToTrace: clientTrace}},
		{"edge: client asks to record", "01", false, []Option{UntrustedCallers()},
			seen{ClientTrace: false, Recording: true, Sampled: true, LinkedToTrace: clientTrace}},
		{"edge without a collector", "01", true, []Option{UntrustedCallers()},
			seen{ClientTrace: false, Recording: false, Sampled: true}},
		{"workload listener continues the caller's trace", "00", false, nil,
			seen{ClientTrace: true, Recording: false, Sampled: false, Baggage: 2, HeadersLeft: []string{"Traceparent", "Tracestate", "Baggage"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got seen
			if tc.noop {
				got = serve(t, noop.NewTracerProvider(), nil, tc.flags, tc.opts...)
			} else {
				exp, tp := inMemory(t)
				got = serve(t, tp, exp, tc.flags, tc.opts...)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}
