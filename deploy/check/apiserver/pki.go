package apiserver

import (
	"crypto"
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
	"path/filepath"
	"time"
)

// pki is the set of files one test cluster needs, all generated at start into the cluster's
// directory (a t.TempDir()): nothing here is committed or reused between runs.
type pki struct {
	CA                string // CA certificate that signed everything below
	EtcdCert, EtcdKey string // etcd's serving certificate (127.0.0.1)
	EtcdClientCert    string // kube-apiserver's client certificate for etcd
	EtcdClientKey     string
	ServingCert       string // kube-apiserver's serving certificate
	ServingKey        string
	AdminCert         string // the test's client certificate, group system:masters
	AdminKey          string
	ServiceAccountKey string // service-account token signing key (private)
	ServiceAccountPub string // and its public half, for token verification
	caCert            *x509.Certificate
	caKey             crypto.Signer
	dir               string
}

// validFor outlasts any test run; the files are thrown away with the directory.
const validFor = 24 * time.Hour

func serial() (*big.Int, error) {
	return rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
}

// newPKI writes a CA and every certificate and key the cluster needs into dir. serviceIP is
// the first address of the Service range, the "kubernetes" Service's ClusterIP.
func newPKI(dir string, serviceIP net.IP) (*pki, error) {
	p := &pki{dir: dir}
	loopback := []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}
	apiServerDNS := []string{"localhost", "kubernetes", "kubernetes.default",
		"kubernetes.default.svc", "kubernetes.default.svc.cluster.local"}
	if err := p.makeCA(); err != nil {
		return nil, err
	}
	steps := []struct {
		name        string
		cn          string
		org         []string
		usage       []x509.ExtKeyUsage
		dns         []string
		ips         []net.IP
		cert, keyTo *string
	}{
		{"etcd-server", "etcd", nil, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, []string{"localhost"}, loopback, &p.EtcdCert, &p.EtcdKey},
		{"etcd-client", "kube-apiserver-etcd-client", nil, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, nil, nil, &p.EtcdClientCert, &p.EtcdClientKey},
		{"apiserver", "kube-apiserver", nil, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, apiServerDNS, append(append([]net.IP{}, loopback...), serviceIP), &p.ServingCert, &p.ServingKey},
		// system:masters is the group RBAC's bootstrap policy binds to cluster-admin.
		{"admin", "ztbank-test-admin", []string{"system:masters"}, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, nil, nil, &p.AdminCert, &p.AdminKey},
	}
	for _, s := range steps {
		c, k, err := p.issue(s.name, s.cn, s.org, s.usage, s.dns, s.ips)
		if err != nil {
			return nil, err
		}
		*s.cert, *s.keyTo = c, k
	}
	saKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("service-account key: %w", err)
	}
	if p.ServiceAccountKey, err = writeKey(dir, "service-account", saKey); err != nil {
		return nil, err
	}
	pub, err := x509.MarshalPKIXPublicKey(&saKey.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("service-account public key: %w", err)
	}
	p.ServiceAccountPub = filepath.Join(dir, "service-account.pub")
	if err := writePEM(p.ServiceAccountPub, "PUBLIC KEY", pub); err != nil {
		return nil, err
	}
	return p, nil
}

func (p *pki) makeCA() error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("CA key: %w", err)
	}
	serial, err := serial()
	if err != nil {
		return fmt.Errorf("CA serial: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "ztbank test cluster CA"},
		NotBefore:             now.Add(-time.Minute),
		NotAfter:              now.Add(validFor),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return fmt.Errorf("CA certificate: %w", err)
	}
	if p.caCert, err = x509.ParseCertificate(der); err != nil {
		return fmt.Errorf("CA certificate: %w", err)
	}
	p.caKey = key
	p.CA = filepath.Join(p.dir, "ca.crt")
	return writePEM(p.CA, "CERTIFICATE", der)
}

// issue writes name.crt and name.key signed by the CA and returns their paths.
func (p *pki) issue(name, cn string, org []string, usage []x509.ExtKeyUsage, dns []string, ips []net.IP) (string, string, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", "", fmt.Errorf("%s key: %w", name, err)
	}
	serial, err := serial()
	if err != nil {
		return "", "", fmt.Errorf("%s serial: %w", name, err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: cn, Organization: org},
		NotBefore:    now.Add(-time.Minute),
		NotAfter:     now.Add(validFor),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:  usage,
		DNSNames:     dns,
		IPAddresses:  ips,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.caCert, &key.PublicKey, p.caKey)
	if err != nil {
		return "", "", fmt.Errorf("%s certificate: %w", name, err)
	}
	certPath := filepath.Join(p.dir, name+".crt")
	if err := writePEM(certPath, "CERTIFICATE", der); err != nil {
		return "", "", err
	}
	keyPath, err := writeKey(p.dir, name, key)
	if err != nil {
		return "", "", err
	}
	return certPath, keyPath, nil
}

func writeKey(dir, name string, key *ecdsa.PrivateKey) (string, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return "", fmt.Errorf("%s key: %w", name, err)
	}
	path := filepath.Join(dir, name+".key")
	return path, writePEM(path, "PRIVATE KEY", der)
}

func writePEM(path, typ string, der []byte) error {
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
