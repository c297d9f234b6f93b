package main

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"log"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/ztbank/ztbank/devkit/demo"
	"github.com/ztbank/ztbank/libs/topology"
	"github.com/ztbank/ztbank/libs/transport"
	"github.com/ztbank/ztbank/libs/usertoken"
)

// memCA is an in-memory SPIFFE trust domain CA for tests: real certificates, keys that
// live only in the test process.
type memCA struct {
	td   spiffeid.TrustDomain
	cert *x509.Certificate
	key  crypto.Signer
}

func newMemCA(t *testing.T, td spiffeid.TrustDomain) *memCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
		URIs: []*url.URL{td.ID().URL()},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &memCA{td: td, cert: cert, key: key}
}

// memSource is a fixed SVID plus the CA's bundle: enough for transport's TLS configs.
type memSource struct {
	svid   *x509svid.SVID
	bundle *x509bundle.Bundle
}

func (s memSource) GetX509SVID() (*x509svid.SVID, error) { return s.svid, nil }
func (s memSource) GetX509BundleForTrustDomain(td spiffeid.TrustDomain) (*x509bundle.Bundle, error) {
	if td != s.bundle.TrustDomain() {
		return nil, errors.New("no bundle")
	}
	return s.bundle, nil
}

func (ca *memCA) source(t *testing.T, id spiffeid.ID) memSource {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		NotBefore:    time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		URIs:        []*url.URL{id.URL()},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return memSource{
		svid:   &x509svid.SVID{ID: id, Certificates: []*x509.Certificate{cert}, PrivateKey: key},
		bundle: x509bundle.FromX509Authorities(ca.td, []*x509.Certificate{ca.cert}),
	}
}

// TestJWKSOverMTLS serves the edge's JWKS with the TLS config main uses and fetches it the
// way every service does: transport.Client bound to the edge's SPIFFE ID.
func TestJWKSOverMTLS(t *testing.T) {
	topo := topology.Default()
	edgeW, _ := topo.Workload("edge")
	gwW, _ := topo.Workload("bank-a/gateway")
	userW, _ := topo.Workload("bank-a/user")
	ca := newMemCA(t, topo.TrustDomain)

	minter, err := usertoken.NewIssuer(edgeW.ID)
	if err != nil {
		t.Fatal(err)
	}
	// Not httptest's StartTLS: it would add its own certificate and serve that instead.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: NewInternalServer(deps{Minter: minter}),
		TLSConfig: transport.ServerTLSAnyMember(ca.source(t, edgeW.ID), topo.TrustDomain),
		ErrorLog:  log.New(io.Discard, "", 0)}
	go func() { _ = srv.ServeTLS(ln, "", "") }()
	defer srv.Close()

	alice, _ := demo.UserByName("alice@bank-a")
	uid, err := usertoken.UserID("bank-a", alice.ID.String())
	if err != nil {
		t.Fatal(err)
	}
	tok, err := minter.Mint(context.Background(), usertoken.Claims{User: uid, Tenant: "bank-a"})
	if err != nil {
		t.Fatal(err)
	}
	quiet := usertoken.WithLogger(slog.New(slog.DiscardHandler))
	jwks := "https://" + ln.Addr().String() + "/.well-known/jwks.json"

	// Any workload of the trust domain may read the keys, once it is sure it reached the edge.
	keys := usertoken.NewRemoteKeys(transport.Client(ca.source(t, userW.ID), edgeW.ID), jwks, quiet)
	if _, err := usertoken.NewVerifier(keys, "bank-a", edgeW.ID).Verify(context.Background(), tok); err != nil {
		t.Errorf("Verify via JWKS over mTLS = %v", err)
	}
	// A client that expects a different server (here: the gateway) refuses the edge's
	// certificate, so it never trusts keys from whoever answered.
	wrong := usertoken.NewRemoteKeys(transport.Client(ca.source(t, userW.ID), gwW.ID), jwks, quiet)
	if _, err := usertoken.NewVerifier(wrong, "bank-a", edgeW.ID).Verify(context.Background(), tok); !errors.Is(err, usertoken.ErrUnknownKey) {
		t.Errorf("Verify via a client bound to another ID = %v, want ErrUnknownKey", err)
	}
	// A client from another trust domain is refused at the handshake.
	outsider := newMemCA(t, spiffeid.RequireTrustDomainFromString("evil.example"))
	foreign := usertoken.NewRemoteKeys(transport.Client(outsider.source(t, spiffeid.RequireFromPath(outsider.td, "/ns/x/sa/y")), edgeW.ID), jwks, quiet)
	if _, err := foreign.Key(context.Background(), "any"); !errors.Is(err, usertoken.ErrUnknownKey) {
		t.Errorf("Key via a foreign trust domain = %v, want a refusal", err)
	}
}
