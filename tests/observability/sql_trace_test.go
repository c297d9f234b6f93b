package observability

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"github.com/ztbank/ztbank/devkit/demo"
)

// TestTraceReachesPostgreSQL sends one real user request that runs a real SQL query (bob
// reads his balance: edge → bank-b gateway → ledger → PostgreSQL) and requires the query's
// span, exported by the ledger process itself, to sit in the edge's trace: walking up its
// parents reaches the ledger's server span, the gateway's, and the edge's root span with no
// link missing. The span names PostgreSQL and the operation, and carries no query argument.
func TestTraceReachesPostgreSQL(t *testing.T) {
	token := userToken(t, "bob@bank-b")
	bobAccount := demo.AccountID("bob@bank-b", "current").String()
	edgeBefore := len(spansOf("edge"))

	req, err := http.NewRequest(http.MethodGet, "https://"+traced["edge"].public+"/bank-b/v1/accounts/"+bobAccount+"/balance", nil)
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
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `"balance"`) {
		t.Fatalf("balance through the edge: %d %s", resp.StatusCode, body)
	}

	// The edge's client span to the gateway names the trace.
	deadline := time.Now().Add(20 * time.Second)
	var traceID []byte
	for traceID == nil {
		for _, s := range spansOf("edge")[edgeBefore:] {
			if s.Span.GetKind() == tracepb.Span_SPAN_KIND_CLIENT && attr(s.Span, "ztbank.peer.workload") == "bank-b/gateway" {
				traceID = s.Span.GetTraceId()
			}
		}
		if traceID == nil {
			if time.Now().After(deadline) {
				t.Fatal("no client span from the edge to bank-b/gateway reached the collector")
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	// Wait for the query span and every span on its way up to the root: each process
	// exports its own batch, so they arrive in any order.
	var (
		query *exportedSpan
		path  []string
		spans []exportedSpan
	)
	for {
		spans = collector.trace(traceID)
		query, path = nil, nil
		for i, s := range spans {
			// The balance is read by a SELECT (inside BEGIN/COMMIT when the ledger uses a
			// transaction, which are spans of their own).
			if s.Span.GetKind() == tracepb.Span_SPAN_KIND_CLIENT && attr(s.Span, "db.system.name") == "postgresql" &&
				attr(s.Span, "db.operation.name") == "SELECT" {
				query = &spans[i]
			}
		}
		if query != nil {
			path = ancestry(spans, *query)
			if len(path) > 0 && path[len(path)-1] == "edge SERVER root" {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("trace %x: query span found = %v, path to the root %v; all spans: %v", traceID, query != nil, path, describe(spans))
		}
		time.Sleep(100 * time.Millisecond)
	}

	want := []string{
		"bank-b/ledger CLIENT", // the query
		"bank-b/ledger SERVER", // GET /v1/accounts/{accountID}/balance at the ledger
		"bank-b/gateway CLIENT",
		"bank-b/gateway SERVER",
		"edge CLIENT",
		"edge SERVER root",
	}
	if diff := cmp.Diff(want, collapse(path)); diff != "" {
		t.Errorf("path from the query span to the root mismatch (-want +got):\n%s\nall spans: %v", diff, describe(spans))
	}
	for _, kv := range query.Span.GetAttributes() {
		if strings.Contains(kv.GetValue().GetStringValue(), bobAccount) {
			t.Errorf("query span attribute %s carries the query argument %s", kv.GetKey(), bobAccount)
		}
	}
}

// ancestry walks from s to the root of its trace and names each span "<workload> <KIND>",
// the root with " root". It stops, without the root, where a parent has not arrived.
func ancestry(spans []exportedSpan, s exportedSpan) []string {
	byID := map[string]exportedSpan{}
	for _, x := range spans {
		byID[string(x.Span.GetSpanId())] = x
	}
	kind := func(x exportedSpan) string {
		return strings.TrimPrefix(x.Span.GetKind().String(), "SPAN_KIND_")
	}
	var out []string
	for cur, n := s, 0; n < 64; n++ {
		parent := cur.Span.GetParentSpanId()
		if len(parent) == 0 {
			return append(out, cur.Workload+" "+kind(cur)+" root")
		}
		out = append(out, cur.Workload+" "+kind(cur))
		next, ok := byID[string(parent)]
		if !ok {
			return out
		}
		cur = next
	}
	return out
}

// collapse drops INTERNAL spans and repeats, so the path reads hop by hop whatever internal
// spans a service adds.
func collapse(path []string) []string {
	var out []string
	for _, p := range path {
		if strings.Contains(p, " INTERNAL") || (len(out) > 0 && out[len(out)-1] == p) {
			continue
		}
		out = append(out, p)
	}
	return out
}
