// Package spiffetest is an in-memory SPIFFE certificate authority for tests: real X.509
// certificates whose keys live only in the test process, so TLS configs built from SVIDs
// can be exercised without a SPIRE server.
package spiffetest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net/url"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// CA signs X509-SVIDs for one trust domain.
type CA struct {
	TD   spiffeid.TrustDomain
	Cert *x509.Certificate
	Key  crypto.Signer
	now  func() time.Time
}

// Option configures a CA.
type Option func(*CA)

// WithClock dates the CA and the SVIDs it issues from now instead of the wall clock, for
// tests whose code under test runs on a fake clock.
func WithClock(now func() time.Time) Option {
	return func(ca *CA) { ca.now = now }
}

// NewCA is a self-signed root for td, valid from an hour before now for a day, so that it
// outlives every SVID a test issues from it: a test about leaf expiry fails on the leaf.
func NewCA(tb testing.TB, td spiffeid.TrustDomain, opts ...Option) *CA {
	tb.Helper()
	ca := &CA{TD: td, now: time.Now}
	for _, o := range opts {
		o(ca)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	now := ca.now()
	tmpl := &x509.Certificate{SerialNumber: serial(tb), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		URIs: []*url.URL{td.ID().URL()}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		tb.Fatal(err)
	}
	if ca.Cert, err = x509.ParseCertificate(der); err != nil {
		tb.Fatal(err)
	}
	ca.Key = key
	return ca
}

// Intermediate is a CA signed by ca that expires at notAfter, as SPIRE signs through an
// upstream authority. Its SVIDs carry only the leaf: a test appends Cert to present the chain.
func (ca *CA) Intermediate(tb testing.TB, notAfter time.Time) *CA {
	tb.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: serial(tb), Subject: pkix.Name{CommonName: "test intermediate"},
		NotBefore: ca.now().Add(-time.Minute), NotAfter: notAfter,
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		URIs: []*url.URL{ca.TD.ID().URL()}}
	cert := ca.sign(tb, tmpl, &key.PublicKey)
	return &CA{TD: ca.TD, Cert: cert, Key: key, now: ca.now}
}

// SVID issues an X509-SVID for id, valid for the next hour.
func (ca *CA) SVID(tb testing.TB, id spiffeid.ID) *x509svid.SVID {
	tb.Helper()
	return ca.SVIDUntil(tb, id, ca.now().Add(time.Hour))
}

// SVIDUntil issues an X509-SVID for id that expires at notAfter (X.509 keeps whole seconds,
// so a test waiting for expiry should wait past the certificate's own NotAfter). Every SVID
// has its own serial number, so a test can tell a rotated one from the one it replaced.
func (ca *CA) SVIDUntil(tb testing.TB, id spiffeid.ID, notAfter time.Time) *x509svid.SVID {
	tb.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: serial(tb), NotBefore: ca.now().Add(-time.Minute), NotAfter: notAfter,
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		URIs:        []*url.URL{id.URL()}}
	cert := ca.sign(tb, tmpl, &key.PublicKey)
	return &x509svid.SVID{ID: id, Certificates: []*x509.Certificate{cert}, PrivateKey: key}
}

// Bundle is the trust bundle of the CA's trust domain: the CA's certificate.
func (ca *CA) Bundle() *x509bundle.Bundle {
	return x509bundle.FromX509Authorities(ca.TD, []*x509.Certificate{ca.Cert})
}

// Source is a workload's fixed SVID for id and the CA's bundle.
func (ca *CA) Source(tb testing.TB, id spiffeid.ID) Source {
	tb.Helper()
	return Source{SVID: ca.SVID(tb, id), Bundle: ca.Bundle()}
}

// Source is one SVID and one bundle, serving as both x509svid.Source and x509bundle.Source
// (what go-spiffe's TLS configs and libs/transport take). It has no bundle for any other
// trust domain, as a Workload API without federation would not.
type Source struct {
	SVID   *x509svid.SVID
	Bundle *x509bundle.Bundle
}

// GetX509SVID returns the SVID.
func (s Source) GetX509SVID() (*x509svid.SVID, error) { return s.SVID, nil }

// GetX509BundleForTrustDomain returns the bundle if it is td's, an error otherwise.
func (s Source) GetX509BundleForTrustDomain(td spiffeid.TrustDomain) (*x509bundle.Bundle, error) {
	return s.Bundle.GetX509BundleForTrustDomain(td)
}

// serial is a random 62-bit certificate serial number.
func serial(tb testing.TB) *big.Int {
	n, err := rand.Int(rand.Reader, big.NewInt(1<<62))
	if err != nil {
		tb.Fatal(err)
	}
	return n
}

// sign issues tmpl for pub under the CA and parses the result.
func (ca *CA) sign(tb testing.TB, tmpl *x509.Certificate, pub *ecdsa.PublicKey) *x509.Certificate {
	tb.Helper()
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, pub, ca.Key)
	if err != nil {
		tb.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		tb.Fatal(err)
	}
	return cert
}
