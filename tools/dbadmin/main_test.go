package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/ztbank/ztbank/libs/localpg/pgtest"
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
