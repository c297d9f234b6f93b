package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5"

	"github.com/ztbank/ztbank/devkit/localpg/pgtest"
	"github.com/ztbank/ztbank/libs/topology"
)

var env *pgtest.Env

func TestMain(m *testing.M) {
	os.Exit(pgtest.Main(m, func(e *pgtest.Env) error { env = e; return nil }))
}

func TestUsageErrors(t *testing.T) {
	getenv := func(string) string { return "" }
	for _, args := range [][]string{
		{"dbadmin"},
		{"dbadmin", "migrate"},
		{"dbadmin", "migrate", "sideways"},
		{"dbadmin", "seed"}, // no DSN
		{"dbadmin", "frobnicate", "-dsn", "postgres://x@127.0.0.1/db?sslmode=verify-full"},
		{"dbadmin", "seed", "-dsn", "postgres://x@127.0.0.1/db?sslmode=verify-full", "extra"},
		{"dbadmin", "seed", "-dsn", "postgres://x@127.0.0.1/db?sslmode=verify-full", "-tenant", "bank-z"},
	} {
		err := run(context.Background(), args, getenv, &bytes.Buffer{}, &bytes.Buffer{})
		if !errors.Is(err, errUsage) {
			t.Errorf("run(%q) = %v, want a usage error", args, err)
		}
	}
	err := run(context.Background(), []string{"dbadmin", "seed", "-dsn", "postgres://x:y@127.0.0.1/db?sslmode=require"}, getenv, &bytes.Buffer{}, &bytes.Buffer{})
	if err == nil || !strings.Contains(err.Error(), "verify-full") {
		t.Errorf("run with sslmode=require = %v, want a verify-full refusal", err)
	}
}

func TestCommands(t *testing.T) {
	pgtest.Require(t)
	ctx := t.Context()
	dir, err := pgtest.MigrationsDir()
	if err != nil {
		t.Fatal(err)
	}
	getenv := func(k string) string {
		return map[string]string{"ZTBANK_DB_ADMIN_DSN": env.Cluster.AdminDSN("postgres"), "ZTBANK_MIGRATIONS_DIR": dir}[k]
	}
	file := filepath.Join(t.TempDir(), "account_svc.password")
	for _, args := range [][]string{
		{"migrate", "up"},
		{"migrate", "down", "-steps", "1"},
		{"migrate", "up"},
		{"seed"},
		{"rotate", "-role", "account_svc", "-file", file, "-ttl", "5m"},
	} {
		var out bytes.Buffer
		if err := run(ctx, append([]string{"dbadmin"}, args...), getenv, &out, &bytes.Buffer{}); err != nil {
			t.Fatalf("dbadmin %s: %v", strings.Join(args, " "), err)
		}
		t.Logf("dbadmin %s: %s", strings.Join(args, " "), strings.TrimSpace(out.String()))
	}
	fi, err := os.Stat(file)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("password file: %v, %v; want mode 0600", fi, err)
	}
	pw, _ := os.ReadFile(file)
	conn, err := pgx.Connect(ctx, env.Cluster.DSN("account_svc", strings.TrimSpace(string(pw)), "bank_a"))
	if err != nil {
		t.Fatalf("log in with the rotated password: %v", err)
	}
	defer conn.Close(ctx)
	var n int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM accounts.accounts`).Scan(&n); err != nil || n == 0 {
		t.Errorf("seeded accounts visible to account_svc: %d, %v", n, err)
	}
}

// TestOnlyTenant: a cluster per tenant (compose) gets that tenant's database and the roles of
// that tenant's workloads, and nothing of another tenant's.
func TestOnlyTenant(t *testing.T) {
	topo := topology.Default()
	for _, tc := range []struct {
		tenant    string
		databases []string
		roles     []string
	}{
		{"bank-a", []string{"bank_a"}, []string{"user_svc", "account_svc"}},
		{"bank-b", []string{"bank_b"}, []string{"payment_svc", "ledger_svc"}},
	} {
		t.Run(tc.tenant, func(t *testing.T) {
			sub, err := onlyTenant(topo, tc.tenant)
			if err != nil {
				t.Fatal(err)
			}
			var dbs, roles []string
			for _, tn := range sub.Tenants {
				dbs = append(dbs, tn.Database)
			}
			for _, w := range sub.Workloads {
				if w.DBRole != "" {
					roles = append(roles, w.DBRole)
				}
			}
			if diff := cmp.Diff(tc.databases, dbs); diff != "" {
				t.Errorf("databases mismatch (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.roles, roles); diff != "" {
				t.Errorf("roles mismatch (-want +got):\n%s", diff)
			}
		})
	}
}
