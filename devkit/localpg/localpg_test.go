package localpg

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5"
)

var cluster *Cluster

func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() {
		fmt.Println("localpg: skipping integration tests in -short mode (they start a PostgreSQL server)")
		os.Exit(0)
	}
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	dir, err := os.MkdirTemp("", "localpg-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cluster, err = Start(ctx, filepath.Join(dir, "pg"), Throwaway())
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer cluster.Stop()
	return m.Run()
}

func TestSuperuserConnectsOverVerifiedTLS(t *testing.T) {
	ctx := t.Context()
	conn, err := pgx.Connect(ctx, cluster.AdminDSN("postgres"))
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer conn.Close(ctx)
	var ssl bool
	var method string
	if err := conn.QueryRow(ctx, `SELECT s.ssl, current_setting('password_encryption') FROM pg_stat_ssl s WHERE s.pid = pg_backend_pid()`).Scan(&ssl, &method); err != nil {
		t.Fatal(err)
	}
	if !ssl || method != "scram-sha-256" {
		t.Errorf("ssl = %v, password_encryption = %q; want true, scram-sha-256", ssl, method)
	}
}

func TestOnlyHostsslScramRule(t *testing.T) {
	ctx := t.Context()
	conn, err := pgx.Connect(ctx, cluster.AdminDSN("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, `SELECT type, database::text, user_name::text, coalesce(address, ''), auth_method, coalesce(error, '') FROM pg_hba_file_rules ORDER BY line_number`)
	if err != nil {
		t.Fatal(err)
	}
	type rule struct{ Type, Database, User, Address, Method, Error string }
	got, err := pgx.CollectRows(rows, pgx.RowToStructByPos[rule])
	if err != nil {
		t.Fatal(err)
	}
	want := []rule{{"hostssl", "{all}", "{all}", "127.0.0.1", "scram-sha-256", ""}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("pg_hba rules mismatch (-want +got):\n%s", diff)
	}
	var sockets string
	if err := conn.QueryRow(ctx, `SELECT current_setting('unix_socket_directories')`).Scan(&sockets); err != nil {
		t.Fatal(err)
	}
	if sockets != "" {
		t.Errorf("unix_socket_directories = %q, want none", sockets)
	}
}

func TestRefusedConnections(t *testing.T) {
	good := cluster.AdminDSN("postgres")
	for _, tc := range []struct {
		name string
		dsn  string
		want string // substring of the error
	}{
		{"plaintext", strings.Replace(good, "sslmode=verify-full", "sslmode=disable", 1), "no pg_hba.conf entry"},
		{"wrong password", cluster.DSN(Superuser, "not-the-password", "postgres"), "password authentication failed"},
		{"unknown CA", strings.Replace(good, "sslrootcert="+urlPathEscape(cluster.CAFile()), "sslrootcert=/etc/ssl/certs/ca-certificates.crt", 1), "certificate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.dsn == good {
				t.Fatal("test DSN was not modified")
			}
			conn, err := pgx.Connect(t.Context(), tc.dsn)
			if err == nil {
				conn.Close(t.Context())
				t.Fatal("connected, want refusal")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not mention %q", err, tc.want)
			}
		})
	}
}

func urlPathEscape(s string) string {
	return strings.ReplaceAll(s, "/", "%2F")
}

func TestKeyFileOwnershipAndMode(t *testing.T) {
	fi, err := os.Stat(filepath.Join(cluster.Dir(), "tls", "server.key"))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("server.key mode %v, want 0600", fi.Mode().Perm())
	}
	if os.Geteuid() == 0 {
		if uid := fi.Sys().(*syscall.Stat_t).Uid; uid == 0 {
			t.Errorf("server.key owned by root, want the postgres user")
		}
	}
	fi, err = os.Stat(filepath.Join(cluster.Dir(), "superuser.password"))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("superuser.password mode %v, want 0600", fi.Mode().Perm())
	}
}

// TestRestartReusesCluster checks the dev-stack path: a second Start on the same directory
// (running or stopped) keeps the data and the password.
func TestRestartReusesCluster(t *testing.T) {
	ctx := t.Context()
	dir := filepath.Join(t.TempDir(), "pg")
	c, err := Start(ctx, dir, Throwaway())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Stop() })
	conn, err := pgx.Connect(ctx, c.AdminDSN("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, `CREATE DATABASE survivor`); err != nil {
		t.Fatal(err)
	}
	conn.Close(ctx)

	adopted, err := Start(ctx, dir)
	if err != nil {
		t.Fatalf("Start on a running cluster: %v", err)
	}
	if adopted.Port() != c.Port() {
		t.Errorf("adopted port %d, want %d", adopted.Port(), c.Port())
	}
	if err := c.Stop(); err != nil {
		t.Fatal(err)
	}
	if conn, err := pgx.Connect(ctx, c.AdminDSN("postgres")); err == nil {
		conn.Close(ctx)
		t.Fatal("connected after Stop")
	}
	again, err := Start(ctx, dir)
	if err != nil {
		t.Fatalf("Start on a stopped cluster: %v", err)
	}
	t.Cleanup(func() { again.Stop() })
	conn, err = pgx.Connect(ctx, again.AdminDSN("survivor"))
	if err != nil {
		t.Fatalf("connect after restart: %v", err)
	}
	conn.Close(ctx)
}

func TestMissingBinaries(t *testing.T) {
	_, err := Start(t.Context(), t.TempDir(), WithBinDir(filepath.Join(t.TempDir(), "nope")))
	if !errors.Is(err, ErrNoBinaries) {
		t.Fatalf("err = %v, want ErrNoBinaries", err)
	}
	if !strings.Contains(err.Error(), DebianPackage) {
		t.Errorf("error %q does not name the package %s", err, DebianPackage)
	}
}
