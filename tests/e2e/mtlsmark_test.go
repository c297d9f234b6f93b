package e2e

import (
	"io"
	"log"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/ztbank/ztbank/devkit/spiffetest"
	"github.com/ztbank/ztbank/libs/transport"
)

// TestHandshakeMark serves the real transport.ServerTLS allowlist and calls it with an
// allowed SVID, a refused one, and one from another trust domain. The allowlist's refusal
// must read as the mtls layer from the alert the server sent, and the server's not_allowed
// counter must count it; a chain refusal sends the same alert but is not counted as the
// allowlist's, which is why TestIsolation checks the counters too. Re-marked as any other
// layer, the refusal must fail the assertion. The SVIDs come from an in-memory CA, so the
// mark is checked without SPIRE (TestIsolation checks it against SPIRE-issued SVIDs).
func TestHandshakeMark(t *testing.T) {
	td := topo.TrustDomain
	ca := spiffetest.NewCA(t, td)
	bundle := ca.Bundle()
	ledger, _ := topo.Workload("bank-b/ledger")
	payment, _ := topo.Workload("bank-b/payment")
	user, _ := topo.Workload("bank-a/user")

	// Served by net/http directly: httptest's StartTLS would put its own certificate in front
	// of the SVID the config hands out.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusOK) }),
		TLSConfig: transport.ServerTLS(spiffetest.Source{SVID: ca.SVID(t, ledger.ID), Bundle: bundle}, []spiffeid.ID{payment.ID}),
		ErrorLog:  log.New(io.Discard, "", 0)}
	go srv.ServeTLS(ln, "", "")
	t.Cleanup(func() { srv.Close() })
	base := "https://" + ln.Addr().String()

	call := func(svid *x509svid.SVID, trust *x509bundle.Bundle) Observed {
		cfg := tlsconfig.MTLSClientConfig(svid, trust, tlsconfig.AuthorizeID(ledger.ID))
		c := mtlsClient(cfg, 10*time.Second)
		defer c.CloseIdleConnections()
		req, _ := http.NewRequest(http.MethodGet, base, nil)
		return do(c, req)
	}
	refusals := func() float64 {
		return testutil.ToFloat64(transport.HandshakeFailures().WithLabelValues("not_allowed"))
	}

	before := refusals()
	if diff := cmp.Diff(Expectation{200, LayerNone}, call(ca.SVID(t, payment.ID), bundle).Expectation()); diff != "" {
		t.Errorf("allowed caller mismatch (-want +got):\n%s", diff)
	}
	refused := call(ca.SVID(t, user.ID), bundle)
	if diff := cmp.Diff(Expectation{0, LayerMTLS}, refused.Expectation()); diff != "" {
		t.Fatalf("caller off the allowlist mismatch (-want +got):\n%s\nerr: %v", diff, refused.Err)
	}
	if got := refusals() - before; got != 1 {
		t.Errorf("not_allowed refusals counted %v, want 1", got)
	}
	for _, other := range refusingLayers() {
		// Re-marked as the mtls layer itself, the answer carries another alert.
		if re := remarked(refused, other); cmp.Equal(Expectation{0, LayerMTLS}, re.Expectation()) {
			t.Errorf("the handshake refusal re-marked as %s (%s) still passes", other, re.Layer)
		}
	}

	// A foreign trust domain: the chain check refuses with the same alert, and the allowlist's
	// counter does not move.
	foreign := spiffetest.NewCA(t, spiffeid.RequireTrustDomainFromString("evil.example"))
	before = refusals()
	stranger := call(foreign.SVID(t, spiffeid.RequireFromPath(foreign.TD, "/ns/bank-b/sa/payment")), bundle)
	if stranger.Alert != alertBadCertificate {
		t.Errorf("foreign-domain client: alert %q (err %v), want %q", stranger.Alert, stranger.Err, alertBadCertificate)
	}
	if got := refusals() - before; got != 0 {
		t.Errorf("a chain refusal moved the allowlist counter by %v", got)
	}
}
