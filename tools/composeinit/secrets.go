package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/big"
	"os"
	"path/filepath"
	"time"

	"github.com/ztbank/ztbank/devkit/atomicfile"
	"github.com/ztbank/ztbank/devkit/devca"
	"github.com/ztbank/ztbank/devkit/devoidc"
	"github.com/ztbank/ztbank/libs/topology"
)

// PostgresHost is the name a tenant's PostgreSQL answers to on that tenant's compose network
// (a network alias), and the only name its server certificate carries.
func PostgresHost(tenant string) string { return "postgres." + tenant }

// Files the secrets step writes, relative to -out. Each directory is the named volume of the
// same name, so a container mounts exactly the secrets it needs and nothing else.
const (
	publicDir   = "pki-public"  // dev-ca.pem, pg-ca.pem: certificates only, mounted by everyone who verifies
	edgeDir     = "pki-edge"    // tls.crt, tls.key: the edge's HTTPS certificate
	devCADir    = "pki-devca"   // ca.pem, ca.key: for the OIDC provider, which issues its own leaf
	pgCADir     = "pki-pgca"    // pg-ca.key: only this step ever mounts it
	edgeConfDir = "edge-config" // enrolment.json: the demo users' enrolment, read by the edge
	devCAFile   = "dev-ca.pem"
	pgCAFile    = "pg-ca.pem"
	pgPassFile  = "pgpass"             // libpq/pgx passfile for the superuser, in admin-<tenant>
	superPWFile = "superuser.password" // read by pg-entrypoint, in pg-<tenant>
)

// pgDir holds one tenant cluster's server certificate, key and superuser password.
func pgDir(tenant string) string { return "pg-" + tenant + "-secrets" }

// adminDir holds one tenant cluster's superuser passfile for the migration and rotation
// containers of that tenant.
func adminDir(tenant string) string { return "db-admin-" + tenant }

// minRemaining is how long an existing certificate must still be valid to be kept; a
// shorter one is reissued, so `compose up` on a day-old stack renews the edge's certificate.
const minRemaining = 2 * time.Hour

func secrets(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("composeinit secrets", flag.ContinueOnError)
	fs.SetOutput(stderr)
	out := fs.String("out", envOr(getenv, "COMPOSEINIT_OUT", "/out"), "`directory` whose subdirectories are the secret volumes")
	topo, err := parseWithTopology(fs, args, getenv)
	if err != nil {
		return err
	}
	if err := frontDoor(*out, stdout); err != nil {
		return err
	}
	if err := enrolment(*out, stdout); err != nil {
		return err
	}
	return postgresSecrets(*out, topo, stdout)
}

// frontDoor issues the dev CA (name-constrained to loopback), the edge's HTTPS certificate
// and hands the CA to the OIDC provider. The edge and the provider are reached only through
// 127.0.0.1 (published ports, and the provider shares the edge's network namespace), so a
// loopback-only CA covers both and is useless anywhere else.
func frontDoor(out string, stdout io.Writer) error {
	caCert, caKey := filepath.Join(out, devCADir, "ca.pem"), filepath.Join(out, devCADir, "ca.key")
	edgeCert, edgeKey := filepath.Join(out, edgeDir, "tls.crt"), filepath.Join(out, edgeDir, "tls.key")
	public := filepath.Join(out, publicDir, devCAFile)
	if validFor(caCert, minRemaining) && validFor(edgeCert, minRemaining) && exists(public) && exists(caKey) && exists(edgeKey) {
		fmt.Fprintln(stdout, "dev CA and edge certificate present and valid; kept")
		return nil
	}
	ca, err := devca.New()
	if err != nil {
		return err
	}
	for _, d := range []string{devCADir, edgeDir, publicDir} {
		if err := requireDir(filepath.Join(out, d)); err != nil {
			return err
		}
	}
	if err := ca.WriteKey(caKey); err != nil {
		return err
	}
	if err := ca.WriteCA(caCert); err != nil {
		return err
	}
	if err := ca.IssueFiles(edgeCert, edgeKey, devca.LoopbackDNSNames, devca.LoopbackIPs); err != nil {
		return err
	}
	if err := ca.WriteCA(public); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "dev CA and edge certificate issued (valid until %s)\n", ca.Certificate().NotAfter.UTC().Format(time.RFC3339))
	return nil
}

// enrolment writes the edge's enrolment table for the development provider's demo users.
// Here rather than by the provider at start-up: the provider shares the edge's network
// namespace and so starts after it, and the edge needs its table when it starts.
func enrolment(out string, stdout io.Writer) error {
	dir := filepath.Join(out, edgeConfDir)
	if err := requireDir(dir); err != nil {
		return err
	}
	if err := devoidc.WriteEnrolment(filepath.Join(dir, devoidc.EnrolmentFile), devoidc.DemoUsers()); err != nil {
		return err
	}
	fmt.Fprintln(stdout, "edge enrolment table written for the demo users")
	return nil
}

// postgresSecrets gives every tenant cluster a server certificate for its one host name from
// a private CA, and a random superuser password. The password is kept while its file exists:
// PostgreSQL learns it once, when the data volume is initialised.
func postgresSecrets(out string, topo *topology.Topology, stdout io.Writer) error {
	caPath, caKeyPath := filepath.Join(out, publicDir, pgCAFile), filepath.Join(out, pgCADir, "pg-ca.key")
	var hosts []string
	for _, t := range topo.Tenants {
		hosts = append(hosts, PostgresHost(t.Name))
	}
	if err := requireDir(filepath.Join(out, pgCADir)); err != nil {
		return err
	}
	ca, err := loadPGCA(caPath, caKeyPath)
	if err != nil {
		if ca, err = newPGCA(hosts); err != nil {
			return err
		}
		if err := writePEM(caKeyPath, "PRIVATE KEY", ca.keyDER, 0o600); err != nil {
			return err
		}
		if err := writePEM(caPath, "CERTIFICATE", ca.cert.Raw, 0o644); err != nil {
			return err
		}
		fmt.Fprintln(stdout, "PostgreSQL CA issued")
	}
	for _, t := range topo.Tenants {
		dir, admin := filepath.Join(out, pgDir(t.Name)), filepath.Join(out, adminDir(t.Name))
		for _, d := range []string{dir, admin} {
			if err := requireDir(d); err != nil {
				return fmt.Errorf("tenant %s: %w", t.Name, err)
			}
		}
		crt, key := filepath.Join(dir, "server.crt"), filepath.Join(dir, "server.key")
		if !validFor(crt, minRemaining) || !exists(key) || !issuedBy(crt, ca.cert) {
			certDER, keyDER, err := ca.issue(PostgresHost(t.Name))
			if err != nil {
				return err
			}
			// PostgreSQL runs under its own uid, not ours: pg-entrypoint copies the key into
			// its data directory with mode 0600 before the server reads it. This volume is
			// mounted by that tenant's PostgreSQL container only.
			if err := writePEM(key, "PRIVATE KEY", keyDER, 0o644); err != nil {
				return err
			}
			if err := writePEM(crt, "CERTIFICATE", certDER, 0o644); err != nil {
				return err
			}
			fmt.Fprintf(stdout, "%s: server certificate issued for %s\n", t.Name, PostgresHost(t.Name))
		}
		pwPath := filepath.Join(dir, superPWFile)
		pw, err := os.ReadFile(pwPath)
		if err != nil {
			pw = []byte(randomSecret())
			// Readable by PostgreSQL's uid (see above); nobody else mounts this volume.
			if err := atomicfile.Write(pwPath, pw, 0o644); err != nil {
				return err
			}
			fmt.Fprintf(stdout, "%s: superuser password generated\n", t.Name)
		}
		// The passfile lets dbadmin and the rotator log in without the password ever
		// appearing in a DSN, an environment variable or a command line.
		if err := atomicfile.Write(filepath.Join(admin, pgPassFile), []byte("*:*:*:postgres:"+string(pw)+"\n"), 0o600); err != nil {
			return err
		}
	}
	return nil
}

type pgCA struct {
	cert   *x509.Certificate
	key    *ecdsa.PrivateKey
	keyDER []byte
}

// newPGCA creates a root that may sign only the given host names, so its key, which lives
// in a volume, is worth nothing outside this stack.
func newPGCA(hosts []string) (*pgCA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:                serial(),
		Subject:                     pkix.Name{Organization: []string{"ztbank compose"}, CommonName: "ztbank compose PostgreSQL CA"},
		NotBefore:                   now.Add(-time.Minute),
		NotAfter:                    now.Add(30 * 24 * time.Hour),
		IsCA:                        true,
		BasicConstraintsValid:       true,
		MaxPathLenZero:              true,
		KeyUsage:                    x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		PermittedDNSDomainsCritical: true,
		PermittedDNSDomains:         hosts,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("sign PostgreSQL CA: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	return &pgCA{cert: cert, key: key, keyDER: keyDER}, nil
}

func loadPGCA(certPath, keyPath string) (*pgCA, error) {
	if !validFor(certPath, minRemaining) {
		return nil, errors.New("no valid PostgreSQL CA")
	}
	cert, err := readCert(certPath)
	if err != nil {
		return nil, err
	}
	b, err := os.ReadFile(keyPath)
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(b)
	if block == nil {
		return nil, fmt.Errorf("%s: no PEM key", keyPath)
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, err
	}
	key, ok := k.(*ecdsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("%s: not an ECDSA key", keyPath)
	}
	return &pgCA{cert: cert, key: key, keyDER: block.Bytes}, nil
}

// issue signs a server certificate for host with a fresh key.
func (ca *pgCA) issue(host string) (certDER, keyDER []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{Organization: []string{"ztbank compose"}, CommonName: host},
		NotBefore:    now.Add(-time.Minute),
		NotAfter:     ca.cert.NotAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     []string{host},
	}
	certDER, err = x509.CreateCertificate(rand.Reader, tmpl, ca.cert, key.Public(), ca.key)
	if err != nil {
		return nil, nil, fmt.Errorf("sign %s: %w", host, err)
	}
	keyDER, err = x509.MarshalPKCS8PrivateKey(key)
	return certDER, keyDER, err
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		panic(err) // crypto/rand does not fail on Linux
	}
	return n
}

func randomSecret() string {
	b := make([]byte, 24)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

func readCert(path string) (*x509.Certificate, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(b)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("%s: no PEM certificate", path)
	}
	return x509.ParseCertificate(block.Bytes)
}

// validFor reports whether the certificate at path parses and stays valid for at least d.
func validFor(path string, d time.Duration) bool {
	c, err := readCert(path)
	return err == nil && time.Now().Add(d).Before(c.NotAfter)
}

func issuedBy(path string, ca *x509.Certificate) bool {
	c, err := readCert(path)
	return err == nil && c.CheckSignatureFrom(ca) == nil
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// requireDir checks that dir exists: each is a volume the compose file mounts, and a
// missing one means the compose file and the topology disagree.
func requireDir(dir string) error {
	fi, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("%s is not mounted (does docker-compose.yml declare a volume for it?): %w", dir, err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("%s is not a directory", dir)
	}
	return nil
}

func writePEM(path, typ string, der []byte, mode os.FileMode) error {
	return atomicfile.Write(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), mode)
}
