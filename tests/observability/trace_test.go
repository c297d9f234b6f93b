package observability

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
)

// mintedClient returns an HTTP client presenting a genuine SVID minted by the stack's SPIRE
// server for id, accepting only server.
func mintedClient(t *testing.T, id, server spiffeid.ID) *http.Client {
	t.Helper()
	svid, err := st.MintSVID(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	cfg := tlsconfig.MTLSClientConfig(svid, svid.Bundle, tlsconfig.AuthorizeID(server))
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg}}
}

func workloadID(t *testing.T, name string) spiffeid.ID {
	t.Helper()
	w, ok := st.Topo.Workload(name)
	if !ok {
		t.Fatalf("no workload %s in the topology", name)
	}
	return w.ID
}

func attr(s *tracepb.Span, key string) string {
	for _, kv := range s.GetAttributes() {
		if kv.GetKey() == key {
			return kv.GetValue().GetStringValue()
		}
	}
	return ""
}

// hop is one server span reduced to what the test asserts: who served, who called, and
// which workload's client span is its parent.
type hop struct {
	Workload, Route, Caller, ParentWorkload string
}

// TestOneTraceCoversEveryHop sends one request, as the edge, into bank-b's gateway with a
// traceparent the test chose, and requires the gateway → payment → ledger and gateway →
// ledger hops to arrive at the collector as one trace: a server span per hop whose caller
// attribute is the SPIFFE ID that hop's mTLS proved, each the child of the calling
// service's client span.
func TestOneTraceCoversEveryHop(t *testing.T) {
	gw := traced["bank-b/gateway"]
	client := mintedClient(t, workloadID(t, "edge"), workloadID(t, "bank-b/gateway"))

	traceID, rootSpan := sendChain(t, client, gw.listen)
	waitChainSpans(t, traceID)
	// Extra spans of this trace would be a failure below; a sleep could not say when they
	// would have arrived. Each service exports its spans in the order they end, so once a
	// second chain request's spans have all arrived, every service has exported everything
	// it ended before them, and the first trace's span set is final.
	marker, _ := sendChain(t, client, gw.listen)
	waitChainSpans(t, marker)
	spans := collector.trace(traceID)

	clientOwner := map[string]string{} // client span ID → workload that made the call
	for _, s := range spans {
		if s.Span.GetKind() == tracepb.Span_SPAN_KIND_CLIENT {
			clientOwner[string(s.Span.GetSpanId())] = s.Workload
		}
	}
	var got []hop
	for _, s := range spans {
		if s.Span.GetKind() != tracepb.Span_SPAN_KIND_SERVER {
			continue
		}
		parent := clientOwner[string(s.Span.GetParentSpanId())]
		if string(s.Span.GetParentSpanId()) == string(rootSpan) {
			parent = "test (as edge)"
		}
		got = append(got, hop{Workload: s.Workload, Route: attr(s.Span, "http.route"),
			Caller: attr(s.Span, "ztbank.caller.spiffe_id"), ParentWorkload: parent})
	}
	sort.Slice(got, func(i, j int) bool {
		return got[i].Workload+got[i].Caller < got[j].Workload+got[j].Caller
	})
	id := func(n string) string { return workloadID(t, n).String() }
	want := []hop{
		{"bank-b/gateway", "/internal/chain", id("edge"), "test (as edge)"},
		{"bank-b/ledger", "/internal/chain", id("bank-b/gateway"), "bank-b/gateway"},
		{"bank-b/ledger", "/internal/chain", id("bank-b/payment"), "bank-b/payment"},
		{"bank-b/payment", "/internal/chain", id("bank-b/gateway"), "bank-b/gateway"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("server spans of the trace mismatch (-want +got):\n%s\nall spans: %v", diff, describe(spans))
	}
	if n := countKind(spans, tracepb.Span_SPAN_KIND_CLIENT); n != 3 {
		t.Errorf("got %d client spans, want 3 (gateway→payment, gateway→ledger, payment→ledger): %v", n, describe(spans))
	}
	for _, s := range spans {
		if s.Span.GetKind() == tracepb.Span_SPAN_KIND_CLIENT && attr(s.Span, "ztbank.peer.workload") == "" {
			t.Errorf("client span %q from %s has no ztbank.peer.workload", s.Span.GetName(), s.Workload)
		}
	}
}

func countKind(spans []exportedSpan, k tracepb.Span_SpanKind) int {
	n := 0
	for _, s := range spans {
		if s.Span.GetKind() == k {
			n++
		}
	}
	return n
}

func describe(spans []exportedSpan) []string {
	var out []string
	for _, s := range spans {
		out = append(out, fmt.Sprintf("%s %s %q caller=%s", s.Workload, s.Span.GetKind(), s.Span.GetName(),
			attr(s.Span, "ztbank.caller.spiffe_id")))
	}
	return out
}

// sendChain sends one /internal/chain request to the gateway with a traceparent the test
// chose and returns its trace ID and the root span ID.
func sendChain(t *testing.T, client *http.Client, listen string) (traceID, rootSpan []byte) {
	t.Helper()
	traceID, rootSpan = make([]byte, 16), make([]byte, 8)
	rand.Read(traceID)
	rand.Read(rootSpan)
	req, err := http.NewRequest(http.MethodGet, "https://"+listen+"/internal/chain", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Traceparent", fmt.Sprintf("00-%x-%x-01", traceID, rootSpan))
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || strings.Contains(string(body), `"error"`) {
		t.Fatalf("chain: status %d, body %s", resp.StatusCode, body)
	}
	return traceID, rootSpan
}

// waitChainSpans waits until the collector holds a chain request's spans: gateway, payment,
// ledger via payment and ledger via gateway make four server spans and three client spans.
// Batches arrive within the 100 ms schedule delay; 20 s allows for a loaded machine.
func waitChainSpans(t *testing.T, traceID []byte) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		spans := collector.trace(traceID)
		if countKind(spans, tracepb.Span_SPAN_KIND_SERVER) >= 4 && countKind(spans, tracepb.Span_SPAN_KIND_CLIENT) >= 3 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 20s the collector has %d spans of trace %s: %v", len(spans), hex.EncodeToString(traceID), describe(spans))
		}
		time.Sleep(100 * time.Millisecond)
	}
}
