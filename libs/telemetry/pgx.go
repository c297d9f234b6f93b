package telemetry

import (
	"context"
	"strings"

	"github.com/jackc/pgx/v5"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// PgxTracer returns a pgx.QueryTracer that opens a client span per query, the last hop of
// a request's trace. Set it on the pool's connection config, for example with
// dbcred.WithConfig(func(c *pgxpool.Config) { c.ConnConfig.Tracer = telemetry.PgxTracer() }).
// Spans carry the statement's operation (SELECT, INSERT...) and the database, never the
// SQL text or its arguments: some statements set role passwords, and arguments are
// customer data.
func PgxTracer(opts ...Option) pgx.QueryTracer {
	return &pgxTracer{o: newOptions(opts)}
}

type pgxTracer struct{ o options }

func (t *pgxTracer) TraceQueryStart(ctx context.Context, conn *pgx.Conn, data pgx.TraceQueryStartData) context.Context {
	if !trace.SpanFromContext(ctx).SpanContext().IsValid() {
		// Queries outside any request (migrations, pool health checks) would each start a
		// trace of their own; they are noise, not hops.
		return ctx
	}
	op := operation(data.SQL)
	attrs := []attribute.KeyValue{attribute.String("db.system.name", "postgresql"), attribute.String("db.operation.name", op)}
	if conn != nil {
		cfg := conn.Config()
		attrs = append(attrs, attribute.String("db.namespace", cfg.Database), attribute.String("server.address", cfg.Host))
	}
	ctx, _ = t.o.tracer().Start(ctx, op, trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(attrs...))
	return ctx
}

func (t *pgxTracer) TraceQueryEnd(ctx context.Context, _ *pgx.Conn, data pgx.TraceQueryEndData) {
	span := trace.SpanFromContext(ctx)
	if !span.IsRecording() {
		return
	}
	if data.Err != nil {
		span.RecordError(data.Err)
		span.SetStatus(codes.Error, "query failed")
	}
	span.End()
}

// operation is the statement's first keyword, upper-cased, or "SQL" when there is none.
func operation(sql string) string {
	f := strings.Fields(sql)
	if len(f) == 0 {
		return "SQL"
	}
	op := strings.ToUpper(strings.TrimRight(f[0], ";("))
	// A keyword is short and alphabetic; anything else (a comment, a typo) is not a name
	// worth putting on a span.
	if len(op) > 16 || strings.IndexFunc(op, func(r rune) bool { return r < 'A' || r > 'Z' }) >= 0 {
		return "SQL"
	}
	return op
}
