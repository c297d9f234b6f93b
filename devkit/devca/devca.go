// Package devca is the local development certificate authority: an ECDSA P-256 root
// generated at start-up that issues short-lived loopback server certificates, so the dev
// stack serves real HTTPS and clients verify it with `curl --cacert` instead of `-k`.
//
// The root is name-constrained to localhost and the loopback ranges. A developer who adds
// it to a trust store, or leaks the key, cannot use it to impersonate any other host:
// Go, OpenSSL and browsers reject a leaf outside the constraints.
package devca

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/ztbank/ztbank/devkit/atomicfile"
)

// DefaultValidity is how long the root and the leaves it issues are valid. A day covers a
// working session; anything longer would only make a leaked dev key useful for longer.
const DefaultValidity = 24 * time.Hour

// clockSkew back-dates NotBefore so that a certificate is accepted at once by a peer whose
// clock runs slightly behind ours.
const clockSkew = time.Minute

// LoopbackDNSNames and LoopbackIPs are the names a local server is reached by.
var (
	LoopbackDNSNames = []string{"localhost"}
	LoopbackIPs      = []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}
)

// ErrOutsideConstraints reports a request for a leaf the root is not allowed to sign.
var ErrOutsideConstraints = errors.New("devca: name outside the loopback constraints")

// CA is an in-memory certificate authority. It is safe for concurrent use.
type CA struct {
	cert     *x509.Certificate
	certPEM  []byte
	key      *ecdsa.PrivateKey
	validity time.Duration
	now      func() time.Time
}

// Option configures a CA.
type Option func(*CA)

// WithValidity sets the lifetime of the root (for New) and of every issued leaf.
func WithValidity(d time.Duration) Option {
	return func(ca *CA) { ca.validity = d }
}

// WithClock sets the clock used for validity periods, so tests can issue certificates that
// are already expired or not yet valid.
func WithClock(now func() time.Time) Option {
	return func(ca *CA) { ca.now = now }
}

func newCA(opts []Option) *CA {
	ca := &CA{validity: DefaultValidity, now: time.Now}
	for _, opt := range opts {
		opt(ca)
	}
	return ca
}

// New generates a fresh root key and self-signed root certificate.
func New(opts ...Option) (*CA, error) {
	ca := newCA(opts)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("devca: generate root key: %w", err)
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, err
	}
	now := ca.now()
	tmpl := &x509.Certificate{
		SerialNumber:                serial,
		Subject:                     pkix.Name{Organization: []string{"ztbank development"}, CommonName: "ztbank dev CA " + now.UTC().Format(time.RFC3339)},
		NotBefore:                   now.Add(-clockSkew),
		NotAfter:                    now.Add(ca.validity),
		IsCA:                        true,
		BasicConstraintsValid:       true,
		MaxPathLenZero:              true,
		KeyUsage:                    x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		PermittedDNSDomainsCritical: true,
		PermittedDNSDomains:         LoopbackDNSNames,
		PermittedIPRanges: []*net.IPNet{
			{IP: net.IPv4(127, 0, 0, 0).To4(), Mask: net.CIDRMask(8, 32)},
			{IP: net.IPv6loopback, Mask: net.CIDRMask(128, 128)},
		},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("devca: sign root: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("devca: parse root: %w", err)
	}
	ca.cert, ca.key = cert, key
	ca.certPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	return ca, nil
}

// Load reads a root written earlier by WriteCA and WriteKey, so that several processes of
// one dev stack share a single root and clients need only one --cacert file.
func Load(certPath, keyPath string, opts ...Option) (*CA, error) {
	ca := newCA(opts)
	certPEM, err := os.ReadFile(certPath)
	if err != nil {
		return nil, fmt.Errorf("devca: read root certificate: %w", err)
	}
	block, _ := pem.Decode(certPEM)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("devca: %s holds no PEM certificate", certPath)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("devca: parse root certificate: %w", err)
	}
	if !cert.IsCA {
		return nil, fmt.Errorf("devca: %s is not a CA certificate", certPath)
	}
	keyPEM, err := os.ReadFile(keyPath)
	if err != nil {
		return nil, fmt.Errorf("devca: read root key: %w", err)
	}
	kb, _ := pem.Decode(keyPEM)
	if kb == nil || kb.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("devca: %s holds no PKCS#8 private key", keyPath)
	}
	parsed, err := x509.ParsePKCS8PrivateKey(kb.Bytes)
	if err != nil {
		return nil, fmt.Errorf("devca: parse root key: %w", err)
	}
	key, ok := parsed.(*ecdsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("devca: root key is %T, want ECDSA", parsed)
	}
	if !key.PublicKey.Equal(cert.PublicKey) {
		return nil, errors.New("devca: root key does not match root certificate")
	}
	ca.cert, ca.key, ca.certPEM = cert, key, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw})
	return ca, nil
}

// Certificate returns the root certificate.
func (ca *CA) Certificate() *x509.Certificate { return ca.cert }

// CertPEM returns the root certificate in PEM form, as clients load it.
func (ca *CA) CertPEM() []byte { return append([]byte(nil), ca.certPEM...) }

// Pool returns a new pool holding only the root, for clients of the dev stack.
func (ca *CA) Pool() *x509.CertPool {
	pool := x509.NewCertPool()
	pool.AddCert(ca.cert)
	return pool
}

// WriteCA writes the root certificate (public) to path with mode 0644.
func (ca *CA) WriteCA(path string) error {
	return writeFile(path, ca.certPEM, 0o644)
}

// WriteKey writes the root private key to path with mode 0600, for a stack whose processes
// share one root. Prefer keeping the CA in memory when one process issues every leaf.
func (ca *CA) WriteKey(path string) error {
	der, err := x509.MarshalPKCS8PrivateKey(ca.key)
	if err != nil {
		return fmt.Errorf("devca: marshal root key: %w", err)
	}
	return writeFile(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)
}

// Issue generates a fresh P-256 key and a server certificate for the given names, signed by
// the root. With no names at all it issues for LoopbackDNSNames and LoopbackIPs. The leaf's
// chain carries the root too, so a client that pins the root can verify either way.
func (ca *CA) Issue(dnsNames []string, ips []net.IP) (tls.Certificate, error) {
	if len(dnsNames) == 0 && len(ips) == 0 {
		dnsNames, ips = LoopbackDNSNames, LoopbackIPs
	}
	for _, ip := range ips {
		if !ip.IsLoopback() {
			return tls.Certificate{}, fmt.Errorf("%w: %s", ErrOutsideConstraints, ip)
		}
	}
	for _, name := range dnsNames {
		if name != "localhost" && !strings.HasSuffix(name, ".localhost") {
			return tls.Certificate{}, fmt.Errorf("%w: %q", ErrOutsideConstraints, name)
		}
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("devca: generate leaf key: %w", err)
	}
	serial, err := randomSerial()
	if err != nil {
		return tls.Certificate{}, err
	}
	now := ca.now()
	notAfter := now.Add(ca.validity)
	if notAfter.After(ca.cert.NotAfter) {
		// A leaf outliving its root would fail verification anyway; say so at the source.
		notAfter = ca.cert.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{Organization: []string{"ztbank development"}, CommonName: leafCommonName(dnsNames, ips)},
		NotBefore:    now.Add(-clockSkew),
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     dnsNames,
		IPAddresses:  ips,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, key.Public(), ca.key)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("devca: sign leaf: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("devca: parse leaf: %w", err)
	}
	return tls.Certificate{Certificate: [][]byte{der, ca.cert.Raw}, PrivateKey: key, Leaf: leaf}, nil
}

// IssueFiles issues a leaf as Issue does and writes its chain (leaf then root) to certPath
// with mode 0644 and its key to keyPath with mode 0600, for servers configured by file.
func (ca *CA) IssueFiles(certPath, keyPath string, dnsNames []string, ips []net.IP) error {
	cert, err := ca.Issue(dnsNames, ips)
	if err != nil {
		return err
	}
	var chain []byte
	for _, der := range cert.Certificate {
		chain = append(chain, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})...)
	}
	der, err := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
	if err != nil {
		return fmt.Errorf("devca: marshal leaf key: %w", err)
	}
	// The key goes first so that a reader never sees a certificate without its key.
	if err := writeFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		return err
	}
	return writeFile(certPath, chain, 0o644)
}

// ServerTLSConfig returns a TLS 1.3 server configuration presenting a fresh loopback leaf.
func (ca *CA) ServerTLSConfig() (*tls.Config, error) {
	cert, err := ca.Issue(nil, nil)
	if err != nil {
		return nil, err
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS13}, nil
}

// ClientTLSConfig returns a client configuration that trusts only the root.
func (ca *CA) ClientTLSConfig() *tls.Config {
	return &tls.Config{RootCAs: ca.Pool(), MinVersion: tls.VersionTLS13}
}

func leafCommonName(dnsNames []string, ips []net.IP) string {
	if len(dnsNames) > 0 {
		return dnsNames[0]
	}
	return ips[0].String()
}

func randomSerial() (*big.Int, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, fmt.Errorf("devca: serial number: %w", err)
	}
	return serial, nil
}

// writeFile writes path atomically (atomicfile.Write) after creating its directory, so that
// a process reading the file while the stack restarts sees the old content or the new, and a
// key file is never readable by others even for an instant.
func writeFile(path string, data []byte, mode os.FileMode) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("devca: create %s: %w", dir, err)
	}
	if err := atomicfile.Write(path, data, mode); err != nil {
		return fmt.Errorf("devca: %w", err)
	}
	return nil
}
