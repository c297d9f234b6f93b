package transport

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"math/big"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// testCA issues SVIDs of one trust domain, generated per test run.
type testCA struct {
	td   spiffeid.TrustDomain
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

func newTestCA(t *testing.T, td string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &testCA{td: spiffeid.RequireTrustDomainFromString(td), cert: cert, key: key}
}

// svid issues an SVID for id valid for the next hour.
func (ca *testCA) svid(t *testing.T, id spiffeid.ID, serial int64) *x509svid.SVID {
	return ca.svidUntil(t, id, serial, time.Now().Add(time.Hour))
}

type staticSource struct {
	svid   *x509svid.SVID
	bundle *x509bundle.Bundle
}

func (s staticSource) GetX509SVID() (*x509svid.SVID, error) { return s.svid, nil }
func (s staticSource) GetX509BundleForTrustDomain(spiffeid.TrustDomain) (*x509bundle.Bundle, error) {
	return s.bundle, nil
}

// TestSteadyStateMakesNoNewHandshakes: a service calling a peer through Client reuses its
// connection, so 1,000 sequential requests cost one handshake, which the server counts.
func TestSteadyStateMakesNoNewHandshakes(t *testing.T) {
	ca := newTestCA(t, "ztbank.local")
	bundle := x509bundle.FromX509Authorities(ca.td, []*x509.Certificate{ca.cert})
	serverID := spiffeid.RequireFromPath(ca.td, "/ns/bank-b/sa/ledger")
	clientID := spiffeid.RequireFromPath(ca.td, "/ns/bank-b/sa/payment")
	// Not httptest's StartTLS: it installs its own certificate over the config's.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok")
	})}
	go srv.Serve(tls.NewListener(ln, ServerTLS(staticSource{ca.svid(t, serverID, 2), bundle}, []spiffeid.ID{clientID})))
	defer srv.Close()
	url := "https://" + ln.Addr().String()

	full := Handshakes().WithLabelValues("false")
	before := testutil.ToFloat64(full)
	client := Client(staticSource{ca.svid(t, clientID, 3), bundle}, serverID)
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
	other := Client(staticSource{ca.svid(t, clientID, 4), bundle}, serverID)
	resp, err := other.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got := testutil.ToFloat64(full) - before; got != 2 {
		t.Errorf("after a second client: %v full handshakes, want 2", got)
	}
}
