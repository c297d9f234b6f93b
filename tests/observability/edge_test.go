package observability

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"github.com/ztbank/ztbank/devkit/devoidc"
)

// devCAClient trusts the stack's development CA, which signed both the OIDC provider's
// and the edge's HTTPS certificates.
func devCAClient(t *testing.T) *http.Client {
	t.Helper()
	pem, err := os.ReadFile(st.Edge.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		t.Fatalf("no certificate in %s", st.Edge.CAFile)
	}
	return &http.Client{Timeout: 15 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

// userToken logs username in at the development OIDC provider, as `make token` does.
func userToken(t *testing.T, username string) string {
	t.Helper()
	passwords, err := devoidc.ReadSecrets(st.OIDC.PasswordsFile)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tok, err := devoidc.Login(ctx, devCAClient(t), st.OIDC.Issuer, devoidc.CLIClientID, username, passwords[username])
	if err != nil {
		t.Fatalf("login %s: %v", username, err)
	}
	return tok.AccessToken
}

// userHop mirrors the parts of server.Hop this test reads.
type userHop struct {
	Workload string    `json:"workload"`
	User     string    `json:"user"`
	Next     []userHop `json:"next"`
	Error    string    `json:"error"`
}

// TestUserRequestTraceFromEdge logs a bank-b customer in, sends one request through the
// real edge (token exchange, internal JWT) to bank-b's chain, and requires one trace from
// the edge's call to the gateway down to both ledger hops, with the user's SPIFFE ID and
// tenant on every tenant service's server span and each caller's workload ID beside them.
func TestUserRequestTraceFromEdge(t *testing.T) {
	token := userToken(t, "bob@bank-b")
	edgeBefore := len(spansOf("edge"))

	req, err := http.NewRequest(http.MethodGet, "https://"+traced["edge"].public+"/bank-b/internal/chain", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := devCAClient(t).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("edge answered %d: %s", resp.StatusCode, body)
	}
	var top userHop
	if err := json.Unmarshal(body, &top); err != nil {
		t.Fatalf("decode %s: %v", body, err)
	}
	if top.User == "" || strings.Contains(string(body), `"error"`) {
		t.Fatalf("the chain did not see the user on every hop: %s", body)
	}
	userID := top.User // the SPIFFE ID the gateway verified from the internal JWT

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
	var spans []exportedSpan
	for {
		spans = collector.trace(traceID)
		if countKind(spans, tracepb.Span_SPAN_KIND_SERVER) >= 5 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("trace %x has %v", traceID, describe(spans))
		}
		time.Sleep(100 * time.Millisecond)
	}

	type userSpan struct{ Workload, Caller, User, Tenant string }
	var got []userSpan
	for _, s := range spans {
		if s.Span.GetKind() == tracepb.Span_SPAN_KIND_SERVER {
			got = append(got, userSpan{s.Workload, attr(s.Span, "ztbank.caller.spiffe_id"),
				attr(s.Span, "ztbank.user.spiffe_id"), attr(s.Span, "ztbank.tenant")})
		}
		if s.Workload == "bank-b/gateway" && s.Span.GetKind() == tracepb.Span_SPAN_KIND_SERVER &&
			string(s.Span.GetParentSpanId()) != string(edgeCall.GetSpanId()) {
			t.Errorf("gateway's server span is not the child of the edge's client span")
		}
	}
	sort.Slice(got, func(i, j int) bool { return got[i].Workload+got[i].Caller < got[j].Workload+got[j].Caller })
	id := func(n string) string { return workloadID(t, n).String() }
	want := []userSpan{
		{"bank-b/gateway", id("edge"), userID, "bank-b"},
		{"bank-b/ledger", id("bank-b/gateway"), userID, "bank-b"},
		{"bank-b/ledger", id("bank-b/payment"), userID, "bank-b"},
		{"bank-b/payment", id("bank-b/gateway"), userID, "bank-b"},
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
