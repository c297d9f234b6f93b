package authz

import (
	"strconv"
	"sync"
	"time"
	"unicode/utf8"
)

// The audit line is encoded by hand rather than through log/slog's JSON handler: the
// handler's generic path (attribute slices, groups, reflection for the roles) cost more than
// the policy decision itself on every request. The bytes are exactly what
// slog.NewJSONHandler wrote for the same record (TestAuditLineMatchesSlog compares them), so
// nothing that reads the audit log can tell.

// lineBuf is a reusable line; pooled by pointer so Put does not allocate.
type lineBuf struct{ b []byte }

var lineBufs = sync.Pool{New: func() any { return &lineBuf{b: make([]byte, 0, 1024)} }}

// maxPooledLine keeps a rare huge line (a long error text) from pinning its buffer.
const maxPooledLine = 16 << 10

// appendLine appends r's audit line, newline included, to b. The caller holds r.mu.
func (a *auditor) appendLine(b []byte, e *Engine, r *record, now time.Time) []byte {
	b = append(b, '{')
	if !now.IsZero() {
		b = append(b, `"time":"`...)
		b = now.AppendFormat(b, time.RFC3339Nano)
		b = append(b, `",`...)
	}
	b = append(b, `"level":"INFO","msg":"authz decision"`...)
	in := &r.in
	b = appendField(b, "decision_id", r.id)
	b = appendField(b, "service", a.svc.Workload)
	b = appendField(b, "service_id", a.svc.ID.String())
	b = appendField(b, "tenant", a.svc.Tenant)
	b = appendField(b, "caller_workload", idString(in.Caller))
	b = appendField(b, "user", idString(in.User))
	b = appendField(b, "user_tenant", in.Tenant)
	b = append(b, `,"roles":[`...)
	for i, role := range in.Roles {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendQuoted(b, role, true)
	}
	b = append(b, ']')
	b = appendField(b, "action", in.Action)
	b = appendField(b, "method", in.Method)
	b = appendField(b, "route", in.Route)
	if len(in.Params) > 0 {
		b = append(b, `,"params":{`...)
		for i, k := range sortedKeys(in.Params) {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendQuoted(b, k, false)
			b = append(b, ':')
			b = appendQuoted(b, in.Params[k], false)
		}
		b = append(b, '}')
	}
	if res := in.Resource; res != nil {
		b = append(b, `,"resource":{"kind":`...)
		b = appendQuoted(b, res.Kind, false)
		b = append(b, `,"id":`...)
		b = appendQuoted(b, res.ID, false)
		b = append(b, `,"owner":`...)
		b = appendQuoted(b, idString(res.Owner), false)
		b = append(b, `,"tenant":`...)
		b = appendQuoted(b, res.Tenant, false)
		b = append(b, '}')
	}
	result := "deny"
	if r.d.Allow {
		result = "allow"
	}
	b = appendField(b, "result", result)
	b = appendField(b, "reason", r.d.Reason)
	b = appendField(b, "policy_revision", e.revision)
	var traceID, spanID string
	if r.span.IsValid() {
		traceID, spanID = r.span.TraceID().String(), r.span.SpanID().String()
	}
	b = appendField(b, "trace_id", traceID)
	b = appendField(b, "span_id", spanID)
	if r.status != 0 {
		b = append(b, `,"status":`...)
		b = strconv.AppendInt(b, int64(r.status), 10)
	}
	if r.err != nil {
		b = appendField(b, "error", r.err.Error())
	}
	return append(b, "}\n"...)
}

// appendField appends ,"key":"value"; keys are ours and need no escaping.
func appendField(b []byte, key, value string) []byte {
	b = append(b, `,"`...)
	b = append(b, key...)
	b = append(b, `":`...)
	return appendQuoted(b, value, false)
}

const hexDigits = "0123456789abcdef"

// appendQuoted appends s as a JSON string the way slog's JSON handler does: no HTML
// escaping, invalid UTF-8 replaced by U+FFFD, U+2028 and U+2029 escaped. slog encodes a
// string attribute itself but an array attribute (the roles) with encoding/json, which
// writes \b and \f short; inArray selects that variant.
func appendQuoted(b []byte, s string, inArray bool) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch {
			case c == '"' || c == '\\':
				b = append(b, '\\', c)
			case c == '\n':
				b = append(b, '\\', 'n')
			case c == '\r':
				b = append(b, '\\', 'r')
			case c == '\t':
				b = append(b, '\\', 't')
			case inArray && c == '\b':
				b = append(b, '\\', 'b')
			case inArray && c == '\f':
				b = append(b, '\\', 'f')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
