package e2e

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/ztbank/ztbank/libs/transport"
)

// testAuthority issues X509-SVIDs offline, so the handshake mark can be checked without SPIRE
// (TestIsolation checks it against SPIRE-issued SVIDs).
type testAuthority struct {
	td   spiffeid.TrustDomain
	cert *x509.Certificate
	key  crypto.Signer
}

func newTestAuthority(t *testing.T, td spiffeid.TrustDomain) *testAuthority {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		URIs: []*url.URL{td.ID().URL()}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &testAuthority{td: td, cert: cert, key: key}
}

func (a *testAuthority) svid(t *testing.T, id spiffeid.ID) *x509svid.SVID {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{SerialNumber: serial, NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true, URIs: []*url.URL{id.URL()}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, a.cert, key.Public(), a.key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &x509svid.SVID{ID: id, Certificates: []*x509.Certificate{cert}, PrivateKey: key}
}

type staticSource struct {
	svid   *x509svid.SVID
	bundle *x509bundle.Bundle
}

func (s staticSource) GetX509SVID() (*x509svid.SVID, error) { return s.svid, nil }
func (s staticSource) GetX509BundleForTrustDomain(td spiffeid.TrustDomain) (*x509bundle.Bundle, error) {
	return s.bundle.GetX509BundleForTrustDomain(td)
}

// TestHandshakeMark serves the real transport.ServerTLS allowlist and calls it with an
// allowed SVID, a refused one, and one from another trust domain. The allowlist's refusal
// must read as the mtls layer from the alert the server sent, and the server's not_allowed
// counter must count it; a chain refusal sends the same alert but is not counted as the
// allowlist's, which is why TestIsolation checks the counters too. Re-marked as any other
// layer, the refusal must fail the assertion.
func TestHandshakeMark(t *testing.T) {
	td := topo.TrustDomain
	ca := newTestAuthority(t, td)
	bundle := x509bundle.FromX509Authorities(td, []*x509.Certificate{ca.cert})
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
		TLSConfig: transport.ServerTLS(staticSource{svid: ca.svid(t, ledger.ID), bundle: bundle}, []spiffeid.ID{payment.ID}),
		ErrorLog:  log.New(io.Discard, "", 0)}
	go srv.ServeTLS(ln, "", "")
	t.Cleanup(func() { srv.Close() })
	base := "https://" + ln.Addr().String()

	call := func(svid *x509svid.SVID, trust *x509bundle.Bundle) Observed {
		cfg := tlsconfig.MTLSClientConfig(svid, trust, tlsconfig.AuthorizeID(ledger.ID))
		c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg}}
		defer c.CloseIdleConnections()
		return classify(c.Get(base))
	}
	refusals := func() float64 {
		return testutil.ToFloat64(transport.HandshakeFailures().WithLabelValues("not_allowed"))
	}

	before := refusals()
	if diff := cmp.Diff(Expectation{200, LayerNone}, call(ca.svid(t, payment.ID), bundle).Expectation()); diff != "" {
		t.Errorf("allowed caller mismatch (-want +got):\n%s", diff)
	}
	refused := call(ca.svid(t, user.ID), bundle)
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
	foreign := newTestAuthority(t, spiffeid.RequireTrustDomainFromString("evil.example"))
	before = refusals()
	stranger := call(foreign.svid(t, spiffeid.RequireFromPath(foreign.td, "/ns/bank-b/sa/payment")), bundle)
	if stranger.Alert != alertBadCertificate {
		t.Errorf("foreign-domain client: alert %q (err %v), want %q", stranger.Alert, stranger.Err, alertBadCertificate)
	}
	if got := refusals() - before; got != 0 {
		t.Errorf("a chain refusal moved the allowlist counter by %v", got)
	}
}
