package audit

import (
	"bufio"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/ztbank/ztbank/devkit/syncbuf"
	"github.com/ztbank/ztbank/libs/authz"
	"github.com/ztbank/ztbank/libs/caller"
	"github.com/ztbank/ztbank/libs/topology"
)

// realLines runs requests through the real libs/authz engine and middleware of bank-b's
// ledger and returns the audit lines it wrote: the parser is tested on what the services
// actually emit, so a change to the audit format fails here.
func realLines(t *testing.T) []string {
	t.Helper()
	topo := topology.Default()
	w, _ := topo.Workload("bank-b/ledger")
	out := &syncbuf.Buffer{}
	now := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	az, err := authz.New(context.Background(), authz.Service{Workload: w.Name, Tenant: w.Tenant, ID: w.ID}, topo,
		authz.WithAuditWriter(out), authz.WithRegisterer(prometheus.NewRegistry()), authz.WithClock(func() time.Time { return now }))
	if err != nil {
		t.Fatal(err)
	}
	r := chi.NewRouter()
	r.Use(az.Audit)
	r.With(az.Require("ledger:read")).Get("/v1/accounts/{accountID}/entries", func(w http.ResponseWriter, req *http.Request) {
		owner := spiffeid.RequireFromString("spiffe://bank-b/user/bob")
		if err := az.Check(req.Context(), "ledger:read", authz.Resource{Kind: "account", ID: chi.URLParam(req, "accountID"), Owner: owner, Tenant: "bank-b"}); err != nil {
			http.Error(w, "denied", http.StatusForbidden)
			return
		}
		w.Write([]byte("{}"))
	})
	gw, _ := topo.Workload("bank-b/gateway")
	send := func(user string, path string) {
		req := httptest.NewRequest(http.MethodGet, path, nil)
		ctx := caller.WithWorkload(req.Context(), gw.ID)
		if user != "" {
			ctx = caller.WithUser(ctx, caller.User{ID: spiffeid.RequireFromString("spiffe://bank-b/user/" + user), Tenant: "bank-b",
				Roles: []string{"customer"}, TokenID: "jti-must-not-appear"})
		}
		r.ServeHTTP(httptest.NewRecorder(), req.WithContext(ctx))
	}
	send("bob", "/v1/accounts/acc-1/entries")  // own account: allowed
	send("dave", "/v1/accounts/acc-1/entries") // someone else's: denied by the policy
	send("", "/v1/nothing")                    // no route
	var lines []string
	sc := bufio.NewScanner(strings.NewReader(out.String()))
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	if len(lines) != 3 {
		t.Fatalf("the engine wrote %d audit lines, want 3:\n%s", len(lines), out.String())
	}
	return lines
}

func TestParseRealAuditLines(t *testing.T) {
	lines := realLines(t)
	at := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	base := Decision{Time: at, Service: "bank-b/ledger", Tenant: "bank-b", Caller: "spiffe://ztbank.local/ns/bank-b/sa/gateway",
		UserTenant: "bank-b", Action: "ledger:read", Method: "GET", Route: "/v1/accounts/{accountID}/entries"}
	allowed, denied := base, base
	allowed.User, allowed.Allow, allowed.Reason, allowed.Status = "spiffe://bank-b/user/bob", true, "allowed", 200
	denied.User, denied.Status = "spiffe://bank-b/user/dave", 403
	noRoute := Decision{Time: at, Service: "bank-b/ledger", Tenant: "bank-b", Caller: "spiffe://ztbank.local/ns/bank-b/sa/gateway",
		Method: "GET", Reason: "no_route", Status: 404}
	var got []Decision
	for _, l := range lines {
		d, err := Parse([]byte(l))
		if err != nil {
			t.Fatalf("Parse(%s) = %v", l, err)
		}
		if !uuidRE.MatchString(d.DecisionID) {
			t.Errorf("decision ID %q", d.DecisionID)
		}
		got = append(got, d)
	}
	// The policy's deny reason is its own business; the test pins that it is a deny.
	if got[1].Allow || got[1].Reason == "" {
		t.Errorf("second decision = %+v, want a deny with a reason", got[1])
	}
	denied.Reason = got[1].Reason
	want := []Decision{allowed, denied, noRoute}
	if diff := cmp.Diff(want, got, cmpopts.IgnoreFields(Decision{}, "DecisionID")); diff != "" {
		t.Errorf("Parse mismatch (-want +got):\n%s", diff)
	}
	for _, l := range lines {
		if strings.Contains(l, "jti-must-not-appear") {
			t.Errorf("the audit line carries the token ID: %s", l)
		}
	}
}

func TestParseRefuses(t *testing.T) {
	good := realLines(t)[0]
	for _, tc := range []struct {
		name string
		line string
		want error
	}{
		{"empty", "", ErrNotDecision},
		{"plain text", "panic: something", ErrNotDecision},
		{"other log line", `{"time":"2026-11-30T12:00:00Z","level":"INFO","msg":"request served","service":"ledger"}`, ErrNotDecision},
		{"message in a value", `{"msg":"x","note":"\"msg\":\"authz decision\""}`, ErrNotDecision},
		{"unknown field", strings.Replace(good, `"result":`, `"extra":1,"result":`, 1), ErrMalformed},
		{"duplicate result", strings.Replace(good, `"result":"allow"`, `"result":"deny","result":"allow"`, 1), ErrMalformed},
		{"result neither", strings.Replace(good, `"result":"allow"`, `"result":"maybe"`, 1), ErrMalformed},
		{"decision id not uuid", strings.Replace(good, `"decision_id":"`, `"decision_id":"x`, 1), ErrMalformed},
		{"caller not spiffe", strings.Replace(good, `"caller_workload":"spiffe://`, `"caller_workload":"https://`, 1), ErrMalformed},
		{"markup in route", strings.Replace(good, `"route":"/v1/accounts/{accountID}/entries"`, `"route":"/<script>"`, 1), ErrMalformed},
		{"missing reason", strings.Replace(good, `"reason":"allowed",`, ``, 1), ErrMalformed},
		{"trailing data", good + `{}`, ErrMalformed},
		{"too long", strings.Replace(good, `"route":`, `"pad":"`+strings.Repeat("a", MaxLine)+`","route":`, 1), ErrMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.line))
			if !errors.Is(err, tc.want) {
				t.Errorf("Parse() = %v, want %v", err, tc.want)
			}
		})
	}
}

// FuzzParse feeds the parser arbitrary lines: it must never panic, and whatever it accepts
// must hold only values of the shapes the console renders (so no markup or control
// characters can reach the page from a log line).
func FuzzParse(f *testing.F) {
	f.Add([]byte(`{"time":"2026-11-30T12:00:00Z","level":"INFO","msg":"authz decision","decision_id":"0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0","service":"bank-a/account","service_id":"spiffe://ztbank.local/ns/bank-a/sa/account","tenant":"bank-a","caller_workload":"spiffe://ztbank.local/ns/bank-a/sa/gateway","user":"spiffe://bank-a/user/alice","user_tenant":"bank-a","roles":["customer"],"action":"accounts:read","method":"GET","route":"/v1/accounts/{accountID}","params":{"accountID":"a1"},"result":"deny","reason":"not_owner","policy_revision":"abc","trace_id":"0123456789abcdef0123456789abcdef","span_id":"0123456789abcdef","status":403}`))
	f.Add([]byte(`{"msg":"authz decision"}`))
	f.Add([]byte(`not json`))
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := Parse(b)
		if err != nil {
			return
		}
		for _, s := range []string{d.DecisionID, d.Service, d.Tenant, d.Caller, d.User, d.UserTenant, d.Action, d.Method, d.Route, d.Reason, d.TraceID} {
			if strings.ContainsAny(s, "<>\"'&\x00\n\r") {
				t.Fatalf("accepted a value with markup or control characters: %q in %+v", s, d)
			}
		}
		if d.Time.IsZero() {
			t.Fatalf("accepted a decision without a time: %+v", d)
		}
	})
}
