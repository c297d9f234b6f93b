// Package logging builds the platform's JSON slog logger. Its handler copies the request's
// identity (caller workload, user, tenant) and trace context onto every record logged with
// a request context, so no call site has to remember to add them and no line about a
// request is missing who made it.
package logging

import (
	"context"
	"io"
	"log/slog"
	"strings"

	"go.opentelemetry.io/otel/trace"

	"github.com/ztbank/ztbank/libs/caller"
)

// New returns a JSON logger writing to w with the service and workload as constant fields.
// level is one of debug, info, warn, error (default info).
func New(w io.Writer, level, service, workload string) *slog.Logger {
	var lv slog.Level
	switch strings.ToLower(level) {
	case "debug":
		lv = slog.LevelDebug
	case "warn":
		lv = slog.LevelWarn
	case "error":
		lv = slog.LevelError
	}
	h := slog.NewJSONHandler(w, &slog.HandlerOptions{Level: lv})
	return slog.New(contextHandler{h}).With("service", service, "workload", workload)
}

type contextHandler struct{ slog.Handler }

func (h contextHandler) Handle(ctx context.Context, r slog.Record) error {
	if ctx != nil {
		id := caller.From(ctx)
		if !id.Workload.IsZero() {
			r.AddAttrs(slog.String("caller", id.Workload.String()))
		}
		if id.HasUser() {
			r.AddAttrs(slog.String("user", id.User.ID.String()), slog.String("tenant", id.User.Tenant))
		}
		if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
			r.AddAttrs(slog.String("trace_id", sc.TraceID().String()), slog.String("span_id", sc.SpanID().String()))
		}
	}
	return h.Handler.Handle(ctx, r)
}

func (h contextHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return contextHandler{h.Handler.WithAttrs(as)}
}

func (h contextHandler) WithGroup(name string) slog.Handler {
	return contextHandler{h.Handler.WithGroup(name)}
}
