package telemetry

import (
	"net/http"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// Outgoing returns a wrapper for a peer client's transport (transport.WithRoundTripper)
// that opens a client span per request to the peer workload and injects the W3C trace
// context into the request, so the next hop's server span joins the same trace. The span
// ends when the response headers arrive; a streamed body is not timed.
func Outgoing(peerWorkload string, opts ...Option) func(http.RoundTripper) http.RoundTripper {
	o := newOptions(opts)
	return func(next http.RoundTripper) http.RoundTripper {
		if next == nil {
			next = http.DefaultTransport
		}
		return &outgoing{next: next, peer: peerWorkload, o: o}
	}
}

type outgoing struct {
	next http.RoundTripper
	peer string
	o    options
}

func (c *outgoing) RoundTrip(r *http.Request) (*http.Response, error) {
	ctx, span := c.o.tracer().Start(r.Context(), r.Method+" "+c.peer, trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(attribute.String("http.request.method", r.Method), attribute.String(AttrPeer, c.peer),
			attribute.String("server.address", r.URL.Host)))
	defer span.End()
	// RoundTrippers must not modify the caller's request, so headers go on a clone.
	r = r.Clone(ctx)
	c.o.propagator().Inject(ctx, propagation.HeaderCarrier(r.Header))
	resp, err := c.next.RoundTrip(r)
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, "request failed")
		return nil, err
	}
	span.SetAttributes(attribute.Int("http.response.status_code", resp.StatusCode))
	if resp.StatusCode >= 500 {
		span.SetStatus(codes.Error, http.StatusText(resp.StatusCode))
	}
	return resp, nil
}
