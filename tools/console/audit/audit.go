// Package audit reads the authorisation decisions the services write, one JSON line per
// request (libs/authz), out of their log files. The files also hold ordinary log lines, and
// a log file is input nobody vetted, so the parser is strict: a line is a decision only if it
// is one JSON object whose msg is "authz decision", with exactly the fields libs/authz
// writes, each of the right shape; anything else is skipped (ErrNotDecision) or refused.
//
// A Decision keeps only what the console shows. Route parameters, the resource, roles and
// error text stay in the log: the console needs none of them to say who was allowed what.
package audit

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// MaxLine is the longest line the parser reads. A real decision is well under 2 KiB; a
// longer line is not one, and refusing it bounds what one line can cost.
const MaxLine = 16 << 10

// Message is the msg of every audit line (libs/authz).
const Message = "authz decision"

var (
	// ErrNotDecision marks a line that is not an audit line at all (another log line).
	ErrNotDecision = errors.New("not an authorisation decision")
	// ErrMalformed marks a line that claims to be a decision but is not a well-formed one.
	ErrMalformed = errors.New("malformed authorisation decision")
)

// Decision is one authorisation decision as the console shows it.
type Decision struct {
	Time       time.Time `json:"time"`
	DecisionID string    `json:"decision_id"`
	Service    string    `json:"service"` // workload that decided, e.g. bank-a/account
	Tenant     string    `json:"tenant"`  // that workload's tenant
	Caller     string    `json:"caller"`  // caller workload's SPIFFE ID, "" if none was proven
	User       string    `json:"user"`    // user's SPIFFE ID, "" for workload-only calls
	UserTenant string    `json:"user_tenant"`
	Action     string    `json:"action"` // permission, "" when no route matched
	Method     string    `json:"method"`
	Route      string    `json:"route"` // chi pattern: no identifiers in it
	Allow      bool      `json:"allow"`
	Reason     string    `json:"reason"`
	Status     int       `json:"status,omitempty"`
	TraceID    string    `json:"trace_id,omitempty"`
}

// line is exactly what libs/authz writes; DisallowUnknownFields refuses anything more, so a
// change to the audit format shows up here (and in the test that parses the real writer's
// output) instead of being half understood.
type line struct {
	Time           *time.Time      `json:"time"`
	Level          *string         `json:"level"`
	Msg            *string         `json:"msg"`
	DecisionID     *string         `json:"decision_id"`
	Service        *string         `json:"service"`
	ServiceID      *string         `json:"service_id"`
	Tenant         *string         `json:"tenant"`
	CallerWorkload *string         `json:"caller_workload"`
	User           *string         `json:"user"`
	UserTenant     *string         `json:"user_tenant"`
	Roles          []string        `json:"roles"`
	Action         *string         `json:"action"`
	Method         *string         `json:"method"`
	Route          *string         `json:"route"`
	Params         json.RawMessage `json:"params"`
	Resource       json.RawMessage `json:"resource"`
	Result         *string         `json:"result"`
	Reason         *string         `json:"reason"`
	PolicyRevision *string         `json:"policy_revision"`
	TraceID        *string         `json:"trace_id"`
	SpanID         *string         `json:"span_id"`
	Status         *int            `json:"status"`
	Error          *string         `json:"error"`
}

var (
	uuidRE    = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)
	traceRE   = regexp.MustCompile(`^[0-9a-f]{32}$`)
	spanRE    = regexp.MustCompile(`^[0-9a-f]{16}$`)
	nameRE    = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}(/[a-z0-9][a-z0-9-]{0,62})?$`)
	wordRE    = regexp.MustCompile(`^[a-z0-9_:.-]{0,64}$`)
	methodRE  = regexp.MustCompile(`^[A-Z]{0,16}$`)
	routeRE   = regexp.MustCompile(`^(/[A-Za-z0-9_.{}*-]*)*$`)
	msgPrefix = []byte(`"msg":"` + Message + `"`)
)

// Parse reads one log line. It returns ErrNotDecision for lines that are not audit lines
// and an error wrapping ErrMalformed for audit lines that break the format.
func Parse(b []byte) (Decision, error) {
	b = bytes.TrimSpace(b)
	if len(b) == 0 || b[0] != '{' || !bytes.Contains(b, msgPrefix) {
		return Decision{}, ErrNotDecision
	}
	if len(b) > MaxLine {
		return Decision{}, fmt.Errorf("%w: line of %d bytes (limit %d)", ErrMalformed, len(b), MaxLine)
	}
	// A first, lenient look decides whether the line is a decision at all: other log lines
	// may mention the message text inside a value.
	var head struct {
		Msg string `json:"msg"`
	}
	if err := json.NewDecoder(bytes.NewReader(b)).Decode(&head); err != nil || head.Msg != Message {
		return Decision{}, ErrNotDecision
	}
	if err := noDuplicateKeys(b); err != nil {
		return Decision{}, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var l line
	if err := dec.Decode(&l); err != nil {
		return Decision{}, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if dec.More() {
		return Decision{}, fmt.Errorf("%w: data after the object", ErrMalformed)
	}
	bad := func(format string, args ...any) (Decision, error) {
		return Decision{}, fmt.Errorf("%w: %s", ErrMalformed, fmt.Sprintf(format, args...))
	}
	required := map[string]*string{"decision_id": l.DecisionID, "service": l.Service, "service_id": l.ServiceID, "tenant": l.Tenant,
		"caller_workload": l.CallerWorkload, "user": l.User, "user_tenant": l.UserTenant, "action": l.Action, "method": l.Method,
		"route": l.Route, "result": l.Result, "reason": l.Reason, "policy_revision": l.PolicyRevision, "trace_id": l.TraceID,
		"span_id": l.SpanID, "level": l.Level}
	for _, k := range []string{"decision_id", "service", "service_id", "tenant", "caller_workload", "user", "user_tenant",
		"action", "method", "route", "result", "reason", "policy_revision", "trace_id", "span_id", "level"} {
		if required[k] == nil {
			return bad("no %s", k)
		}
	}
	if l.Time == nil || l.Time.IsZero() {
		return bad("no time")
	}
	if l.Roles == nil {
		return bad("no roles")
	}
	switch {
	case !uuidRE.MatchString(*l.DecisionID):
		return bad("decision_id %q is not a UUID", *l.DecisionID)
	case !nameRE.MatchString(*l.Service):
		return bad("service %q is not a workload name", *l.Service)
	case !nameRE.MatchString(*l.Tenant) || strings.Contains(*l.Tenant, "/"):
		return bad("tenant %q is not a tenant name", *l.Tenant)
	case *l.UserTenant != "" && (!nameRE.MatchString(*l.UserTenant) || strings.Contains(*l.UserTenant, "/")):
		return bad("user_tenant %q is not a tenant name", *l.UserTenant)
	case !wordRE.MatchString(*l.Action):
		return bad("action %q is not a permission", *l.Action)
	case !methodRE.MatchString(*l.Method):
		return bad("method %q", *l.Method)
	case len(*l.Route) > 256 || !routeRE.MatchString(*l.Route):
		return bad("route %q is not a route pattern", *l.Route)
	case *l.Result != "allow" && *l.Result != "deny":
		return bad("result %q is neither allow nor deny", *l.Result)
	case !wordRE.MatchString(*l.Reason):
		return bad("reason %q", *l.Reason)
	case *l.TraceID != "" && !traceRE.MatchString(*l.TraceID):
		return bad("trace_id %q", *l.TraceID)
	case *l.SpanID != "" && !spanRE.MatchString(*l.SpanID):
		return bad("span_id %q", *l.SpanID)
	case l.Status != nil && (*l.Status < 100 || *l.Status > 599):
		return bad("status %d", *l.Status)
	}
	for field, v := range map[string]string{"service_id": *l.ServiceID, "caller_workload": *l.CallerWorkload, "user": *l.User} {
		if v == "" && field != "service_id" {
			continue
		}
		if _, err := spiffeid.FromString(v); err != nil {
			return bad("%s %q is not a SPIFFE ID", field, v)
		}
	}
	d := Decision{Time: l.Time.UTC(), DecisionID: *l.DecisionID, Service: *l.Service, Tenant: *l.Tenant,
		Caller: *l.CallerWorkload, User: *l.User, UserTenant: *l.UserTenant, Action: *l.Action, Method: *l.Method,
		Route: *l.Route, Allow: *l.Result == "allow", Reason: *l.Reason, TraceID: *l.TraceID}
	if l.Status != nil {
		d.Status = *l.Status
	}
	return d, nil
}

// noDuplicateKeys refuses an object that names a key twice at its top level: encoding/json
// keeps the last, so a forged second "result" could otherwise turn a deny into an allow for
// whoever reads the line after us.
func noDuplicateKeys(b []byte) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	if _, err := dec.Token(); err != nil {
		return err
	}
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return err
		}
		k, ok := tok.(string)
		if !ok {
			return fmt.Errorf("key is %T", tok)
		}
		if seen[k] {
			return fmt.Errorf("key %q appears twice", k)
		}
		seen[k] = true
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return err
		}
	}
	return nil
}
