package localpg

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"time"
)

const (
	certLifetime = 90 * 24 * time.Hour
	// renewBefore makes a persistent cluster get new certificates well before they expire,
	// so a dev stack left for weeks keeps working.
	renewBefore = 7 * 24 * time.Hour
)

// ensureCerts writes a fresh CA and server certificate into dir unless a server certificate
// valid for at least renewBefore is already there. The CA key is never written: nothing but
// this one leaf is ever signed, so a new pair is simply generated at renewal. It reports
// whether it wrote new files.
func ensureCerts(dir string, owner *user.User, now time.Time) (bool, error) {
	certPath := filepath.Join(dir, "server.crt")
	if b, err := os.ReadFile(certPath); err == nil {
		if blk, _ := pem.Decode(b); blk != nil {
			if cert, err := x509.ParseCertificate(blk.Bytes); err == nil && cert.NotAfter.After(now.Add(renewBefore)) {
				return false, nil
			}
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return false, fmt.Errorf("localpg: %w", err)
	}
	// The server (running as postgres) must traverse dir to reach its key.
	if err := os.Chmod(dir, 0o755); err != nil {
		return false, fmt.Errorf("localpg: %w", err)
	}
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return false, fmt.Errorf("localpg: generate CA key: %w", err)
	}
	caTmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "ztbank localpg CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(certLifetime + time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return false, fmt.Errorf("localpg: create CA certificate: %w", err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return false, fmt.Errorf("localpg: generate server key: %w", err)
	}
	leafTmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: "localhost"},
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(certLifetime),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, leafTmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return false, fmt.Errorf("localpg: create server certificate: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return false, fmt.Errorf("localpg: %w", err)
	}
	files := []struct {
		name  string
		typ   string
		der   []byte
		mode  os.FileMode
		owned bool
	}{
		{"ca.crt", "CERTIFICATE", caDER, 0o644, false},
		{"server.crt", "CERTIFICATE", leafDER, 0o644, true},
		// PostgreSQL refuses a key readable by group or others.
		{"server.key", "PRIVATE KEY", keyDER, 0o600, true},
	}
	for _, f := range files {
		path := filepath.Join(dir, f.name)
		tmp := path + ".tmp"
		if err := os.WriteFile(tmp, pem.EncodeToMemory(&pem.Block{Type: f.typ, Bytes: f.der}), f.mode); err != nil {
			return false, fmt.Errorf("localpg: %w", err)
		}
		if f.owned {
			if err := chownTo(tmp, owner); err != nil {
				return false, err
			}
		}
		if err := os.Rename(tmp, path); err != nil {
			return false, fmt.Errorf("localpg: %w", err)
		}
	}
	return true, nil
}

func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	return n
}
