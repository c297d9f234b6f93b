package observability

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"github.com/ztbank/ztbank/devkit/demo"
)

// devCAClient trusts the stack's development CA, which signed both the OIDC provider's
// and the edge's HTTPS certificates.
func devCAClient(t *testing.T) *http.Client {
	t.Helper()
	return &http.Client{Timeout: 15 * time.Second, Transport: &http.Transport{TLSClientConfig: st.EdgeTLS()},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

// userToken logs username in at the development OIDC provider, as `make token` does.
func userToken(t *testing.T, username string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tok, err := st.Login(ctx, devCAClient(t), username)
	if err != nil {
		t.Fatal(err)
	}
	return tok.AccessToken
}

// TestUserRequestTraceFromEdge logs a bank-b customer in and makes one payment through the
// real edge (token exchange, internal JWT): edge → gateway → payment → ledger. It requires
// one trace from the edge's call to the gateway down to the ledger, with the user's SPIFFE
// ID and tenant on every tenant service's server span and each caller's workload ID beside
// them. (The diagnostic chain is not public since internal routes stopped at the edge.)
func TestUserRequestTraceFromEdge(t *testing.T) {
	token := userToken(t, "bob@bank-b")
	edgeBefore := len(spansOf("edge"))

	from, to := demo.AccountID("bob@bank-b", "current"), demo.AccountID("dave@bank-b", "current")
	body := fmt.Sprintf(`{"from_account":%q,"to_account":%q,"amount":{"amount":1,"currency":"EUR"},"reference":"trace-%d"}`,
		from, to, time.Now().UnixNano())
	req, err := http.NewRequest(http.MethodPost, "https://"+traced["edge"].public+"/bank-b/v1/payments", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", fmt.Sprintf("trace-%d", time.Now().UnixNano()))
	resp, err := devCAClient(t).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	answer, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("edge answered %d: %s", resp.StatusCode, answer)
	}
	userPrefix := "spiffe://bank-b/user/" // users' IDs live in their tenant's trust domain

	// The edge's client span to the gateway is the root of the trace.
	var edgeCall *tracepb.Span
	deadline := time.Now().Add(20 * time.Second)
	for edgeCall == nil {
		for _, s := range spansOf("edge")[edgeBefore:] {
			if s.Span.GetKind() == tracepb.Span_SPAN_KIND_CLIENT && attr(s.Span, "ztbank.peer.workload") == "bank-b/gateway" {
				edgeCall = s.Span
			}
		}
		if edgeCall == nil && time.Now().After(deadline) {
			t.Fatal("no client span from the edge to bank-b/gateway reached the collector")
		}
		time.Sleep(100 * time.Millisecond)
	}
	traceID := edgeCall.GetTraceId()
	type userSpan struct{ Workload, Caller, User, Tenant string }
	// serverSpans reduces the trace's server spans to distinct (workload, caller, user,
	// tenant) rows: the payment service calls the ledger more than once (account lookups,
	// the posting), and each call must carry the same identities.
	serverSpans := func(spans []exportedSpan) []userSpan {
		seen := map[userSpan]bool{}
		var out []userSpan
		for _, s := range spans {
			if s.Span.GetKind() != tracepb.Span_SPAN_KIND_SERVER {
				continue
			}
			u := userSpan{s.Workload, attr(s.Span, "ztbank.caller.spiffe_id"), attr(s.Span, "ztbank.user.spiffe_id"), attr(s.Span, "ztbank.tenant")}
			if !seen[u] {
				seen[u] = true
				out = append(out, u)
			}
		}
		sort.Slice(out, func(i, j int) bool { return out[i].Workload+out[i].Caller < out[j].Workload+out[j].Caller })
		return out
	}
	var spans []exportedSpan
	for {
		spans = collector.trace(traceID)
		if len(serverSpans(spans)) >= 4 && slices.ContainsFunc(serverSpans(spans), func(u userSpan) bool { return u.Workload == "bank-b/ledger" }) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("trace %x has %v", traceID, describe(spans))
		}
		time.Sleep(100 * time.Millisecond)
	}
	got := serverSpans(spans)
	// The user's SPIFFE ID is whatever the gateway verified from the internal JWT; it must
	// be a bank-b user's and the same on every hop.
	var user string
	for _, u := range got {
		if u.Workload == "bank-b/gateway" {
			user = u.User
		}
	}
	if !strings.HasPrefix(user, userPrefix) {
		t.Fatalf("gateway span carries user %q, want a bank-b user (%s…)", user, userPrefix)
	}
	for _, s := range spans {
		if s.Workload == "bank-b/gateway" && s.Span.GetKind() == tracepb.Span_SPAN_KIND_SERVER &&
			string(s.Span.GetParentSpanId()) != string(edgeCall.GetSpanId()) {
			t.Errorf("gateway's server span is not the child of the edge's client span")
		}
	}
	id := func(n string) string { return workloadID(t, n).String() }
	want := []userSpan{
		{"bank-b/gateway", id("edge"), user, "bank-b"},
		{"bank-b/ledger", id("bank-b/payment"), user, "bank-b"},
		{"bank-b/payment", id("bank-b/gateway"), user, "bank-b"},
		// The edge's own server span starts the trace; its client is outside the platform, so
		// it carries no workload or user identity (the user is proven only further in).
		{"edge", "", "", ""},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("server spans of the edge's trace mismatch (-want +got):\n%s\nall: %v", diff, describe(spans))
	}
	for _, s := range spans {
		for _, kv := range s.Span.GetAttributes() {
			if strings.Contains(kv.GetValue().GetStringValue(), token[:20]) {
				t.Errorf("span %q carries the user's token in %s", s.Span.GetName(), kv.GetKey())
			}
		}
	}
}

// spansOf returns every span the collector holds from workload, in arrival order.
func spansOf(workload string) []exportedSpan {
	collector.mu.Lock()
	defer collector.mu.Unlock()
	var out []exportedSpan
	for _, s := range collector.spans {
		if s.Workload == workload {
			out = append(out, s)
		}
	}
	return out
}
