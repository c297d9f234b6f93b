package devca

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func newTestCA(t *testing.T, opts ...Option) *CA {
	t.Helper()
	ca, err := New(opts...)
	if err != nil {
		t.Fatalf("New() error = %v", err)
	}
	return ca
}

func TestIssueVerifiesForLoopbackNames(t *testing.T) {
	ca := newTestCA(t)
	cert, err := ca.Issue(nil, nil)
	if err != nil {
		t.Fatalf("Issue() error = %v", err)
	}
	for _, host := range []string{"127.0.0.1", "::1", "localhost"} {
		t.Run(host, func(t *testing.T) {
			_, err := cert.Leaf.Verify(x509.VerifyOptions{
				DNSName:   host,
				Roots:     ca.Pool(),
				KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
			})
			if err != nil {
				t.Errorf("Verify(%s) error = %v", host, err)
			}
		})
	}
	if got := cert.Leaf.NotAfter.Sub(cert.Leaf.NotBefore); got > DefaultValidity+2*clockSkew {
		t.Errorf("leaf validity = %v, want at most %v", got, DefaultValidity)
	}
	if _, err := cert.Leaf.Verify(x509.VerifyOptions{DNSName: "127.0.0.2", Roots: ca.Pool()}); err == nil {
		t.Error("Verify(127.0.0.2) succeeded for a leaf not issued for it")
	}
}

func TestIssueRefusesNamesOutsideLoopback(t *testing.T) {
	ca := newTestCA(t)
	for _, tc := range []struct {
		name  string
		dns   []string
		ips   []net.IP
		valid bool
	}{
		{name: "localhost", dns: []string{"localhost"}, valid: true},
		{name: "sub.localhost", dns: []string{"edge.localhost"}, valid: true},
		{name: "loopback v4 range", ips: []net.IP{net.ParseIP("127.0.0.53")}, valid: true},
		{name: "public DNS name", dns: []string{"bank.example"}},
		{name: "localhost lookalike", dns: []string{"localhost.example"}},
		{name: "private address", ips: []net.IP{net.ParseIP("10.0.0.1")}},
		{name: "unspecified address", ips: []net.IP{net.IPv4zero}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ca.Issue(tc.dns, tc.ips)
			if tc.valid && err != nil {
				t.Errorf("Issue() error = %v, want nil", err)
			}
			if !tc.valid && !errors.Is(err, ErrOutsideConstraints) {
				t.Errorf("Issue() error = %v, want ErrOutsideConstraints", err)
			}
		})
	}
}

// TestRootNameConstraintsAreEnforced signs a leaf for a public name with the root key
// directly, bypassing Issue's own check, to show that a leaked root cannot vouch for any
// host outside loopback: the constraint lives in the root certificate itself.
func TestRootNameConstraintsAreEnforced(t *testing.T) {
	ca := newTestCA(t)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, err := randomSerial()
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: "bank.example"},
		NotBefore:    time.Now().Add(-time.Minute),
		NotAfter:     time.Now().Add(time.Hour),
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     []string{"bank.example"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, key.Public(), ca.key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	var constraintErr x509.CertificateInvalidError
	_, err = leaf.Verify(x509.VerifyOptions{DNSName: "bank.example", Roots: ca.Pool()})
	if !errors.As(err, &constraintErr) || constraintErr.Reason != x509.CANotAuthorizedForThisName {
		t.Errorf("Verify(bank.example) error = %v, want CANotAuthorizedForThisName", err)
	}
}

func TestExpiredLeafIsRejected(t *testing.T) {
	past := time.Now().Add(-48 * time.Hour)
	ca := newTestCA(t, WithClock(func() time.Time { return past }), WithValidity(time.Hour))
	cert, err := ca.Issue(nil, nil)
	if err != nil {
		t.Fatalf("Issue() error = %v", err)
	}
	var invalid x509.CertificateInvalidError
	_, err = cert.Leaf.Verify(x509.VerifyOptions{DNSName: "localhost", Roots: ca.Pool()})
	if !errors.As(err, &invalid) || invalid.Reason != x509.Expired {
		t.Errorf("Verify() error = %v, want Expired", err)
	}
}

func TestTLSHandshake(t *testing.T) {
	ca := newTestCA(t)
	serverConf, err := ca.ServerTLSConfig()
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", serverConf)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				conn.SetDeadline(time.Now().Add(10 * time.Second))
				io.WriteString(conn, "hello")
			}()
		}
	}()

	for _, tc := range []struct {
		name    string
		conf    *tls.Config
		wantErr bool
	}{
		{name: "trusting the dev root", conf: ca.ClientTLSConfig()},
		{name: "trusting another dev root", conf: newTestCA(t).ClientTLSConfig(), wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conn, err := tls.Dial("tcp", ln.Addr().String(), tc.conf)
			if tc.wantErr {
				if err == nil {
					conn.Close()
					t.Fatal("Dial() succeeded, want a verification error")
				}
				return
			}
			if err != nil {
				t.Fatalf("Dial() error = %v", err)
			}
			defer conn.Close()
			got, err := io.ReadAll(conn)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff("hello", string(got)); diff != "" {
				t.Errorf("read mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestFilesAndLoad(t *testing.T) {
	dir := t.TempDir()
	ca := newTestCA(t)
	caPath := filepath.Join(dir, "ca", "ca.pem")
	caKeyPath := filepath.Join(dir, "ca", "ca-key.pem")
	certPath := filepath.Join(dir, "tls", "server.pem")
	keyPath := filepath.Join(dir, "tls", "server-key.pem")
	if err := ca.WriteCA(caPath); err != nil {
		t.Fatal(err)
	}
	if err := ca.WriteKey(caKeyPath); err != nil {
		t.Fatal(err)
	}
	if err := ca.IssueFiles(certPath, keyPath, nil, nil); err != nil {
		t.Fatal(err)
	}

	got := map[string]os.FileMode{}
	for _, p := range []string{caPath, caKeyPath, certPath, keyPath} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		rel, _ := filepath.Rel(dir, p)
		got[rel] = fi.Mode().Perm()
	}
	want := map[string]os.FileMode{
		"ca/ca.pem":          0o644,
		"ca/ca-key.pem":      0o600,
		"tls/server.pem":     0o644,
		"tls/server-key.pem": 0o600,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("file modes mismatch (-want +got):\n%s", diff)
	}

	// The written pair must load back into a working server certificate.
	pair, err := tls.LoadX509KeyPair(certPath, keyPath)
	if err != nil {
		t.Fatalf("LoadX509KeyPair() error = %v", err)
	}
	if _, err := pair.Leaf.Verify(x509.VerifyOptions{DNSName: "127.0.0.1", Roots: ca.Pool()}); err != nil {
		t.Errorf("written leaf does not verify: %v", err)
	}

	// A root loaded from disk issues leaves that the original root's pool trusts.
	loaded, err := Load(caPath, caKeyPath)
	if err != nil {
		t.Fatalf("Load() error = %v", err)
	}
	leaf, err := loaded.Issue(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := leaf.Leaf.Verify(x509.VerifyOptions{DNSName: "::1", Roots: ca.Pool()}); err != nil {
		t.Errorf("leaf from loaded root does not verify: %v", err)
	}

	// A key from another root must not be accepted alongside this certificate.
	otherKey := filepath.Join(dir, "other-key.pem")
	if err := newTestCA(t).WriteKey(otherKey); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(caPath, otherKey); err == nil {
		t.Error("Load() with a mismatched key succeeded")
	}
	if _, err := Load(certPath, keyPath); err == nil {
		t.Error("Load() of a leaf as a root succeeded")
	}
}
