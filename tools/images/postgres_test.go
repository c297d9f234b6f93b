package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

const pgImage = "ztbank/postgres:15"

// tlsMaterial writes a throwaway CA and a server certificate for localhost and 127.0.0.1
// into dir, made now so no key ever lives in the repository.
func tlsMaterial(t *testing.T, dir string) (caFile, certFile, keyFile string) {
	t.Helper()
	now := time.Now()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "ztbank image test CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	srvKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	srvDER, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "localhost"},
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}, ca, &srvKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(srvKey)
	if err != nil {
		t.Fatal(err)
	}
	write := func(name, typ string, der []byte) string {
		p := filepath.Join(dir, name)
		// World-readable like a bind-mounted secret the container user does not own: the
		// entrypoint must copy the key to a 0600 file of its own, or PostgreSQL refuses it.
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	return write("ca.pem", "CERTIFICATE", caDER), write("server.pem", "CERTIFICATE", srvDER), write("server.key", "PRIVATE KEY", keyDER)
}

// startPostgres runs the image as compose does — read-only root, no capabilities, the data
// directory on a named volume — and returns the container name and the host port.
func startPostgres(t *testing.T, name, volume, dir string) string {
	t.Helper()
	mustDocker(t, "run", "-d", "--name", name,
		"--read-only", "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
		"-v", volume+":/var/lib/postgresql/data",
		"-v", filepath.Join(dir, "password")+":/run/secrets/pg-password:ro",
		"-v", filepath.Join(dir, "server.pem")+":/run/secrets/pg-cert:ro",
		"-v", filepath.Join(dir, "server.key")+":/run/secrets/pg-key:ro",
		"-e", "ZTBANK_PG_SUPERUSER_PASSWORD_FILE=/run/secrets/pg-password",
		"-e", "ZTBANK_PG_TLS_CERT=/run/secrets/pg-cert",
		"-e", "ZTBANK_PG_TLS_KEY=/run/secrets/pg-key",
		"-p", "127.0.0.1::5432",
		pgImage)
	hostPort := mustDocker(t, "port", name, "5432/tcp")
	_, p, err := net.SplitHostPort(strings.Split(hostPort, "\n")[0])
	if err != nil {
		t.Fatalf("docker port %s: %q: %v", name, hostPort, err)
	}
	return p
}

func pgConnect(ctx context.Context, port, password, sslmode, caFile string) (*pgx.Conn, error) {
	u := url.URL{
		Scheme:   "postgres",
		User:     url.UserPassword("postgres", password),
		Host:     net.JoinHostPort("localhost", port),
		Path:     "/postgres",
		RawQuery: url.Values{"sslmode": {sslmode}, "sslrootcert": {caFile}, "connect_timeout": {"5"}}.Encode(),
	}
	return pgx.Connect(ctx, u.String())
}

// TestPostgresImage proves the ztbank/postgres:15 contract (deploy/images/README.md): TLS
// verified against the caller's CA with scram-sha-256 works; a connection without TLS and a
// wrong password are refused; the healthcheck passes; SIGTERM is a clean fast shutdown; and a
// restart on the same volume keeps the cluster and the password.
func TestPostgresImage(t *testing.T) {
	requireImages(t)
	dir := t.TempDir()
	caFile, _, _ := tlsMaterial(t, dir)
	pwBytes := make([]byte, 18)
	if _, err := rand.Read(pwBytes); err != nil {
		t.Fatal(err)
	}
	password := hex.EncodeToString(pwBytes)
	if err := os.WriteFile(filepath.Join(dir, "password"), []byte(password+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// t.TempDir is 0700; the container user (999) reaches the files through the bind mounts,
	// not through this directory, so the directory's mode does not matter.

	volume := randomName(t, "ztbank-imgtest-pgdata")
	mustDocker(t, "volume", "create", volume)
	removeLater(t, "volume", volume)
	name := randomName(t, "ztbank-imgtest-postgres")
	removeLater(t, "container", name)
	port := startPostgres(t, name, volume, dir)

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	// initdb on a loaded two-core machine: allow minutes, return as soon as it answers.
	var conn *pgx.Conn
	waitFor(t, "PostgreSQL accepts a verified TLS + scram connection", 3*time.Minute, func() error {
		if st := mustDocker(t, "inspect", "-f", "{{.State.Status}}", name); st != "running" {
			logs, _ := dockerCmd(ctx, "logs", name)
			t.Fatalf("container %s: %s\n%s", st, name, logs)
		}
		c, err := pgConnect(ctx, port, password, "verify-full", caFile)
		if err != nil {
			return err
		}
		conn = c
		return nil
	})
	var ssl bool
	var version, stored string
	if err := conn.QueryRow(ctx, `SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()`).Scan(&ssl, &version); err != nil {
		t.Fatal(err)
	}
	if !ssl || !strings.HasPrefix(version, "TLSv1.") {
		t.Errorf("pg_stat_ssl: ssl=%v version=%q, want TLS", ssl, version)
	}
	if err := conn.QueryRow(ctx, `SELECT rolpassword FROM pg_authid WHERE rolname = 'postgres'`).Scan(&stored); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(stored, "SCRAM-SHA-256$") {
		t.Errorf("superuser password stored as %.14q..., want a SCRAM-SHA-256 verifier", stored)
	}
	conn.Close(ctx)

	for _, tc := range []struct {
		name, password, sslmode, wantCode, wantText string
	}{
		{"no TLS", password, "disable", "28000", "no encryption"},
		{"wrong password", password + "x", "verify-full", "28P01", "password authentication failed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := pgConnect(ctx, port, tc.password, tc.sslmode, caFile)
			if err == nil {
				c.Close(ctx)
				t.Fatal("connection accepted, want refused")
			}
			var pgErr *pgconn.PgError
			if !errors.As(err, &pgErr) || pgErr.Code != tc.wantCode || !strings.Contains(pgErr.Message, tc.wantText) {
				t.Errorf("error = %v, want SQLSTATE %s mentioning %q", err, tc.wantCode, tc.wantText)
			}
		})
	}

	if out, err := dockerCmd(ctx, "exec", name, "pg-entrypoint", "healthcheck"); err != nil {
		t.Errorf("healthcheck of a running server: %v\n%s", err, out)
	}

	// docker stop sends SIGTERM and waits 30 s before SIGKILL: a fast shutdown finishes well
	// within that, exits 0 and logs that it was a fast shutdown.
	mustDocker(t, "stop", "-t", "30", name)
	if code := mustDocker(t, "inspect", "-f", "{{.State.ExitCode}}", name); code != "0" {
		logs, _ := dockerCmd(ctx, "logs", name)
		t.Fatalf("exit code after docker stop = %s, want 0\n%s", code, logs)
	}
	logs, _ := dockerCmd(ctx, "logs", name)
	for _, want := range []string{"received fast shutdown request", "database system is shut down"} {
		if !strings.Contains(logs, want) {
			t.Errorf("logs lack %q:\n%s", want, logs)
		}
	}

	// Same volume, new container: no second initdb, same password.
	mustDocker(t, "rm", name)
	port = startPostgres(t, name, volume, dir)
	waitFor(t, "PostgreSQL restarted on its volume", 3*time.Minute, func() error {
		c, err := pgConnect(ctx, port, password, "verify-full", caFile)
		if err != nil {
			return err
		}
		return c.Close(ctx)
	})
	logs, _ = dockerCmd(ctx, "logs", name)
	if strings.Contains(logs, "initialising") {
		t.Errorf("second start initialised again:\n%s", logs)
	}
}

// TestPostgresRefusesWithoutTLS: the entrypoint will not start a server without its TLS and
// password settings, and says which are missing in one line.
func TestPostgresRefusesWithoutTLS(t *testing.T) {
	requireImages(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	name := randomName(t, "ztbank-imgtest-pgnotls")
	removeLater(t, "container", name)
	out, err := dockerCmd(ctx, "run", "--name", name, "--read-only", "--cap-drop", "ALL", pgImage)
	if err == nil {
		t.Fatalf("started without TLS settings:\n%s", out)
	}
	want := "pg-entrypoint: required: ZTBANK_PG_SUPERUSER_PASSWORD_FILE, ZTBANK_PG_TLS_CERT, ZTBANK_PG_TLS_KEY (TLS and a superuser password are not optional)"
	if got := strings.TrimSpace(out); got != want {
		t.Errorf("output = %q, want %q", got, want)
	}
}
