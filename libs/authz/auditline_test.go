package authz

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"go.opentelemetry.io/otel/trace"
)

// slogLine is the audit line as the engine wrote it through slog's JSON handler before the
// line was encoded by hand: the reference appendLine must reproduce byte for byte.
func slogLine(t *testing.T, a *auditor, e *Engine, r *record, now time.Time) string {
	t.Helper()
	var buf bytes.Buffer
	h := slog.NewJSONHandler(&buf, nil)
	in := &r.in
	result := "deny"
	if r.d.Allow {
		result = "allow"
	}
	var traceID, spanID string
	if r.span.IsValid() {
		traceID, spanID = r.span.TraceID().String(), r.span.SpanID().String()
	}
	attrs := []slog.Attr{
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
	}
	if len(in.Params) > 0 {
		var params []any
		for _, k := range sortedKeys(in.Params) {
			params = append(params, slog.String(k, in.Params[k]))
		}
		attrs = append(attrs, slog.Group("params", params...))
	}
	if res := in.Resource; res != nil {
		attrs = append(attrs, slog.Group("resource", slog.String("kind", res.Kind), slog.String("id", res.ID),
			slog.String("owner", idString(res.Owner)), slog.String("tenant", res.Tenant)))
	}
	attrs = append(attrs, slog.String("result", result), slog.String("reason", r.d.Reason),
		slog.String("policy_revision", e.revision), slog.String("trace_id", traceID), slog.String("span_id", spanID))
	if r.status != 0 {
		attrs = append(attrs, slog.Int("status", r.status))
	}
	if r.err != nil {
		attrs = append(attrs, slog.String("error", r.err.Error()))
	}
	rec := slog.NewRecord(now, slog.LevelInfo, "authz decision", 0)
	rec.AddAttrs(attrs...)
	if err := h.Handle(context.Background(), rec); err != nil {
		t.Fatal(err)
	}
	return buf.String()
}

// nonNil is how the slog encoder made nil roles an empty array rather than null.
func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// TestAuditLineMatchesSlog: the hand-written encoder produces exactly the bytes slog's JSON
// handler produced, for plain records and for every awkward character an attribute can
// carry (each ASCII byte, invalid UTF-8, U+2028/2029, non-ASCII text).
func TestAuditLineMatchesSlog(t *testing.T) {
	e := newTestEngine(t, "bank-a/account")
	a := newAuditor(io.Discard, e.audit.counter, e.svc)
	var ascii strings.Builder
	for c := range 128 {
		ascii.WriteByte(byte(c))
	}
	awkward := []string{"", ascii.String(), "\xff\xfe bad \xc3", "line\u2028sep\u2029para", "Zoë → 銀行 🏦", `<script>&"'`}
	alice := userID("bank-a", "alice")
	span := trace.NewSpanContext(trace.SpanContextConfig{TraceID: trace.TraceID{0xab, 1}, SpanID: trace.SpanID{0xcd, 2}})
	when := time.Date(2026, 12, 1, 2, 3, 4, 567890100, time.UTC)

	records := map[string]*record{
		"allow with resource": {id: "d-1", in: typicalInput(t), d: allow, span: span, status: 200},
		"deny without user":   {id: "d-2", in: Input{Caller: workloadID(t, "bank-a/gateway"), Action: "whoami", Method: "GET", Route: "/internal/whoami"}, d: denyUserRequired, status: 403},
		"undecided nil roles": {id: "d-3", d: Decision{Reason: ReasonNoRoute}},
		"policy error":        {id: "d-4", in: typicalInput(t), d: Decision{Reason: ReasonPolicyError}, err: errors.New("evaluate policy: boom\n\"quoted\"")},
	}
	for i, s := range awkward {
		records["awkward "+string(rune('a'+i))] = &record{
			id: s,
			in: Input{User: alice, Tenant: s, Roles: []string{s, "customer", s + "\b\f"}, Action: s, Method: s, Route: s,
				Params:   map[string]string{s: s, "z" + s: "v"},
				Resource: &Resource{Kind: s, ID: s, Owner: spiffeid.ID{}, Tenant: s}},
			d: Decision{Reason: s}, err: errors.New(s), status: 500 + i,
		}
	}
	for name, r := range records {
		for _, now := range []time.Time{when, when.In(time.FixedZone("X", 3600+1800)), {}} {
			want := slogLine(t, a, e, r, now)
			got := string(a.appendLine(nil, e, r, now))
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("%s at %v: line differs from slog's (-slog +ours):\n%s", name, now, diff)
			}
		}
	}
}

// BenchmarkAuditLine compares the encoders for the typical record.
func BenchmarkAuditLine(b *testing.B) {
	e := newTestEngine(b, "bank-a/account")
	a := newAuditor(io.Discard, prometheus.NewCounterVec(prometheus.CounterOpts{Name: "x"}, []string{"service", "result", "reason"}), e.svc)
	r := &record{id: "6f1c2d3e-0000-4000-8000-000000000000", in: typicalInput(b), d: allow, status: 200,
		span: trace.NewSpanContext(trace.SpanContextConfig{TraceID: trace.TraceID{1}, SpanID: trace.SpanID{2}})}
	now := time.Now()
	b.Run("hand", func(b *testing.B) {
		b.ReportAllocs()
		var buf []byte
		for b.Loop() {
			buf = a.appendLine(buf[:0], e, r, now)
		}
	})
	b.Run("slog", func(b *testing.B) {
		b.ReportAllocs()
		t := &testing.T{}
		for b.Loop() {
			slogLine(t, a, e, r, now)
		}
	})
}
