package telemetry

import (
	"context"
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

func TestPgxTracerSpans(t *testing.T) {
	exp, tp := inMemory(t)
	tr := PgxTracer(WithTracerProvider(tp))

	// Outside a request: no span, so pool health checks and migrations make no traces.
	ctx := tr.TraceQueryStart(context.Background(), nil, pgx.TraceQueryStartData{SQL: "select 1"})
	tr.TraceQueryEnd(ctx, nil, pgx.TraceQueryEndData{})

	reqCtx, req := tp.Tracer("t").Start(context.Background(), "GET /v1/payments")
	ctx = tr.TraceQueryStart(reqCtx, nil, pgx.TraceQueryStartData{SQL: "INSERT INTO entries VALUES ($1, $2)",
		Args: []any{"acc-1", "secret-arg"}})
	tr.TraceQueryEnd(ctx, nil, pgx.TraceQueryEndData{Err: errors.New("serialization failure")})
	req.End()

	spans := exp.GetSpans()
	if len(spans) != 2 {
		t.Fatalf("got %d spans %v, want the query and the request", len(spans), spanNames(spans))
	}
	q := spans[0]
	if q.Name != "INSERT" || q.SpanKind != trace.SpanKindClient || q.Status.Code != codes.Error {
		t.Errorf("query span = %q kind %v status %v, want INSERT, client, Error", q.Name, q.SpanKind, q.Status.Code)
	}
	if q.Parent.SpanID() != spans[1].SpanContext.SpanID() {
		t.Error("query span is not the request span's child")
	}
	want := map[string]string{"db.system.name": "postgresql", "db.operation.name": "INSERT"}
	if diff := cmp.Diff(want, attrs(q.Attributes)); diff != "" {
		t.Errorf("query span attributes mismatch (-want +got):\n%s", diff)
	}
}
