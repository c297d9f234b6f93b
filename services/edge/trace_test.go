package main

import (
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestClientTraceContextStopsAtTheEdge: a client's traceparent, tracestate and baggage
// sent to the edge's public handler (the one main serves) never reach the gateway: before
// the fix the proxy relayed them, so the client chose the trace ID of every hop's audit
// lines, could switch recording off, and had its baggage carried inward. The edge's own
// trace context is what its peer client injects (telemetry.Outgoing); here the stand-in
// gateway's transport injects none, so nothing of the client's may remain.
func TestClientTraceContextStopsAtTheEdge(t *testing.T) {
	te := newTestEdge(t)
	pub := httptest.NewTLSServer(NewPublicHandler(te.deps))
	t.Cleanup(pub.Close)
	req, err := http.NewRequest(http.MethodGet, pub.URL+"/bank-a/v1/users/me", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+te.provider.SignRS256(t, te.claims("alice@bank-a")))
	req.Header.Set("Traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00")
	req.Header.Set("Tracestate", "vendor=x")
	req.Header.Set("Baggage", "tenant=bank-b,role=staff")
	resp, err := pub.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	reqs := te.gateways["bank-a"].requests()
	if len(reqs) != 1 {
		t.Fatalf("gateway got %d requests, want 1", len(reqs))
	}
	got := map[string][]string{}
	for _, k := range []string{"Traceparent", "Tracestate", "Baggage"} {
		if v := reqs[0].Header.Values(k); len(v) > 0 {
			got[k] = v
		}
	}
	if diff := cmp.Diff(map[string][]string{}, got); diff != "" {
		t.Errorf("client trace headers relayed to the gateway (-want +got):\n%s", diff)
	}
}
