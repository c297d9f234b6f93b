package transport

import (
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/ztbank/ztbank/devkit/spiffetest"
)

// testTD is the trust domain of the tests' CAs.
var testTD = spiffeid.RequireTrustDomainFromString("ztbank.local")

// TestSteadyStateMakesNoNewHandshakes: a service calling a peer through Client reuses its
// connection, so 1,000 sequential requests cost one handshake, which the server counts.
func TestSteadyStateMakesNoNewHandshakes(t *testing.T) {
	ca := spiffetest.NewCA(t, testTD)
	bundle := ca.Bundle()
	serverID := spiffeid.RequireFromPath(ca.TD, "/ns/bank-b/sa/ledger")
	clientID := spiffeid.RequireFromPath(ca.TD, "/ns/bank-b/sa/payment")
	// Not httptest's StartTLS: it installs its own certificate over the config's.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok")
	})}
	go srv.Serve(tls.NewListener(ln, ServerTLS(spiffetest.Source{SVID: ca.SVID(t, serverID), Bundle: bundle}, []spiffeid.ID{clientID})))
	defer srv.Close()
	url := "https://" + ln.Addr().String()

	full := Handshakes().WithLabelValues("false")
	before := testutil.ToFloat64(full)
	client := Client(spiffetest.Source{SVID: ca.SVID(t, clientID), Bundle: bundle}, serverID)
	const requests = 1000
	for i := range requests {
		resp, err := client.Get(url)
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	got := testutil.ToFloat64(full) - before
	t.Logf("handshakes: %v full for %d kept-alive requests (%.1f per 1,000 after the first)", got, requests, (got-1)*1000/requests)
	if got != 1 {
		t.Errorf("%d requests made %v full handshakes, want 1 (one kept-alive connection)", requests, got)
	}

	// A second client, as after a restart, is one more handshake: the counter sees them.
	other := Client(spiffetest.Source{SVID: ca.SVID(t, clientID), Bundle: bundle}, serverID)
	resp, err := other.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got := testutil.ToFloat64(full) - before; got != 2 {
		t.Errorf("after a second client: %v full handshakes, want 2", got)
	}
}
