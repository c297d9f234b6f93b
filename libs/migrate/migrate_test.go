package migrate_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ztbank/ztbank/devkit/localpg/pgtest"
	"github.com/ztbank/ztbank/libs/migrate"
)

var env *pgtest.Env

func TestMain(m *testing.M) {
	os.Exit(pgtest.Main(m, func(e *pgtest.Env) error { env = e; return nil }))
}

func migrationsFS(t *testing.T) fstest.MapFS {
	t.Helper()
	dir, err := pgtest.MigrationsDir()
	if err != nil {
		t.Fatal(err)
	}
	out := fstest.MapFS{}
	for _, db := range []string{"bank_a", "bank_b"} {
		entries, err := os.ReadDir(dir + "/" + db)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			b, err := os.ReadFile(dir + "/" + db + "/" + e.Name())
			if err != nil {
				t.Fatal(err)
			}
			out[db+"/"+e.Name()] = &fstest.MapFile{Data: b}
		}
	}
	return out
}

func TestLoad(t *testing.T) {
	migs, err := migrate.Load(migrationsFS(t), "bank_b")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, m := range migs {
		got = append(got, fmt.Sprintf("%04d_%s", m.Version, m.Name))
	}
	want := []string{"0001_database", "0002_ledger", "0003_payments"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Load() mismatch (-want +got):\n%s", diff)
	}
	for _, tc := range []struct {
		name string
		fs   fstest.MapFS
	}{
		{"missing down", fstest.MapFS{"d/0001_a.up.sql": {Data: []byte("SELECT 1")}}},
		{"bad name", fstest.MapFS{"d/1_a.up.sql": {Data: []byte("SELECT 1")}}},
		{"two names", fstest.MapFS{"d/0001_a.up.sql": {Data: []byte("SELECT 1")}, "d/0001_b.down.sql": {Data: []byte("SELECT 1")}}},
	} {
		if _, err := migrate.Load(tc.fs, "d"); err == nil {
			t.Errorf("%s: Load succeeded, want error", tc.name)
		}
	}
}

func TestUpIsIdempotentAndDownReverts(t *testing.T) {
	pgtest.Require(t)
	ctx := t.Context()
	fsys := migrationsFS(t)
	if err := migrate.UpAll(ctx, env.Cluster.AdminDSN("postgres"), env.Topology, fsys); err != nil {
		t.Fatalf("second UpAll: %v", err)
	}
	conn, err := pgx.Connect(ctx, env.Cluster.AdminDSN("bank_a"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	migs, err := migrate.Load(fsys, "bank_a")
	if err != nil {
		t.Fatal(err)
	}
	owner := migrate.OwnerRole("bank_a")
	if applied, err := migrate.Up(ctx, conn, owner, migs); err != nil || len(applied) != 0 {
		t.Fatalf("Up on a migrated database applied %v, %v; want nothing", applied, err)
	}
	reverted, err := migrate.Down(ctx, conn, owner, migs, 2)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]int{3, 2}, reverted); diff != "" {
		t.Errorf("Down(2) mismatch (-want +got):\n%s", diff)
	}
	var schemas int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM pg_namespace WHERE nspname IN ('users', 'accounts')`).Scan(&schemas); err != nil {
		t.Fatal(err)
	}
	if schemas != 0 {
		t.Errorf("%d service schemas left after down, want 0", schemas)
	}
	applied, err := migrate.Up(ctx, conn, owner, migs)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]int{2, 3}, applied); diff != "" {
		t.Errorf("Up after Down mismatch (-want +got):\n%s", diff)
	}
	var tableOwner string
	if err := conn.QueryRow(ctx, `SELECT tableowner FROM pg_tables WHERE schemaname = 'accounts' AND tablename = 'accounts'`).Scan(&tableOwner); err != nil {
		t.Fatal(err)
	}
	if tableOwner != owner {
		t.Errorf("accounts.accounts owned by %s, want %s", tableOwner, owner)
	}

	edited := append([]migrate.Migration(nil), migs...)
	edited[1].Up += "\n-- edited after it ran\n"
	if _, err := migrate.Up(ctx, conn, owner, edited); !errors.Is(err, migrate.ErrChecksum) {
		t.Errorf("Up with an edited migration: %v, want ErrChecksum", err)
	}
}

// probe is one statement a role tries; "read" and "write" probes run in a transaction that
// is rolled back, so they leave no rows behind.
type probe struct {
	db, table, kind, sql string
}

var probes = []probe{
	{"bank_a", "users.users", "read", `SELECT count(*) FROM users.users`},
	{"bank_a", "users.users", "write", `INSERT INTO users.users (id, username, display_name, role) VALUES (gen_random_uuid(), 'probe@bank-a', 'Probe', 'customer')`},
	{"bank_a", "accounts.accounts", "read", `SELECT count(*) FROM accounts.accounts`},
	{"bank_a", "accounts.accounts", "write", `INSERT INTO accounts.accounts (id, owner_id, name, currency) VALUES (gen_random_uuid(), gen_random_uuid(), 'probe', 'EUR')`},
	{"bank_a", "accounts.accounts", "set balance", `UPDATE accounts.accounts SET balance = balance + 1`},
	{"bank_b", "ledger.accounts", "read", `SELECT count(*) FROM ledger.accounts`},
	{"bank_b", "ledger.accounts", "write", `INSERT INTO ledger.accounts (id, owner_id, name, currency) VALUES (gen_random_uuid(), gen_random_uuid(), 'probe', 'EUR')`},
	{"bank_b", "ledger.accounts", "set balance", `UPDATE ledger.accounts SET balance = balance + 1`},
	{"bank_b", "ledger.entries", "read", `SELECT count(*) FROM ledger.entries`},
	// One unbalanced entry: the balance check is deferred to a commit that never comes, so this
	// probes the INSERT grant (and the owner-run balance trigger) alone.
	{"bank_b", "ledger.entries", "write", `
		INSERT INTO ledger.accounts (id, owner_id, name, currency) VALUES ('00000000-0000-0000-0000-0000000000a1', gen_random_uuid(), 'probe', 'EUR');
		INSERT INTO ledger.transactions (id, reference) VALUES ('00000000-0000-0000-0000-0000000000b1', 'probe');
		INSERT INTO ledger.entries (transaction_id, account_id, currency, amount) VALUES ('00000000-0000-0000-0000-0000000000b1', '00000000-0000-0000-0000-0000000000a1', 'EUR', 5)`},
	{"bank_b", "ledger.entries", "delete", `DELETE FROM ledger.entries`},
	{"bank_b", "payments.payments", "read", `SELECT count(*) FROM payments.payments`},
	{"bank_b", "payments.payments", "write", `INSERT INTO payments.payments (id, requested_by, idempotency_key, from_account, to_account, amount, currency, status) VALUES (gen_random_uuid(), gen_random_uuid(), 'k', gen_random_uuid(), gen_random_uuid(), 1, 'EUR', 'pending')`},
	{"bank_b", "payments.idempotency_keys", "read", `SELECT count(*) FROM payments.idempotency_keys`},
	{"bank_b", "payments.idempotency_keys", "write", `INSERT INTO payments.idempotency_keys (principal, key, request_hash, payment_id, state, expires_at) VALUES (gen_random_uuid(), 'k', sha256('x'), gen_random_uuid(), 'in_progress', now() + interval '25 hours')`},
	{"bank_a", "public", "ddl", `CREATE TABLE public.probe (i int)`},
	{"bank_b", "public", "ddl", `CREATE TABLE public.probe (i int)`},
	{"bank_b", "ledger", "ddl", `CREATE TABLE ledger.probe (i int)`},
}

// TestRoleGrants runs every probe as every service role and compares the outcome with the
// grants the design calls for: each role reaches its own tables only, and only the other
// tenant's database refuses the connection itself.
func TestRoleGrants(t *testing.T) {
	pgtest.Require(t)
	ctx := t.Context()
	roles := []string{"user_svc", "account_svc", "payment_svc", "ledger_svc"}
	got := map[string]string{}
	for _, role := range roles {
		for _, db := range []string{"bank_a", "bank_b"} {
			pool, err := env.Pool(ctx, role, db)
			if err != nil {
				t.Fatal(err)
			}
			err = pool.Ping(ctx)
			if err != nil {
				got[role+" connect "+db] = outcome(err)
				pool.Close()
				continue
			}
			for _, p := range probes {
				if p.db != db {
					continue
				}
				got[fmt.Sprintf("%s %s %s", role, p.kind, p.table)] = outcome(tryRolledBack(ctx, pool, p.sql))
			}
			pool.Close()
		}
	}
	want := map[string]string{}
	allow := map[string]bool{
		"user_svc read users.users":                   true,
		"account_svc read accounts.accounts":          true,
		"account_svc write accounts.accounts":         true,
		"ledger_svc read ledger.accounts":             true,
		"ledger_svc write ledger.accounts":            true,
		"ledger_svc read ledger.entries":              true,
		"ledger_svc write ledger.entries":             true,
		"payment_svc read payments.payments":          true,
		"payment_svc write payments.payments":         true,
		"payment_svc read payments.idempotency_keys":  true,
		"payment_svc write payments.idempotency_keys": true,
	}
	home := map[string]string{"user_svc": "bank_a", "account_svc": "bank_a", "payment_svc": "bank_b", "ledger_svc": "bank_b"}
	for _, role := range roles {
		for _, db := range []string{"bank_a", "bank_b"} {
			if db != home[role] {
				want[role+" connect "+db] = `permission denied for database "` + db + `"`
				continue
			}
			for _, p := range probes {
				if p.db != db {
					continue
				}
				key := fmt.Sprintf("%s %s %s", role, p.kind, p.table)
				if allow[key] {
					want[key] = "ok"
				} else {
					want[key] = "permission denied"
				}
			}
		}
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("grants mismatch (-want +got):\n%s", diff)
	}
}

func tryRolledBack(ctx context.Context, pool *pgxpool.Pool, sql string) error {
	tx, err := pool.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(ctx)
	_, err = tx.Exec(ctx, sql)
	return err
}

// outcome reduces an error to what the test compares: "ok", "permission denied" (SQLSTATE
// 42501, any object) or, for a refused connection, the server's message.
func outcome(err error) string {
	var pe *pgconn.PgError
	switch {
	case err == nil:
		return "ok"
	case errors.As(err, &pe) && pe.Code == "42501" && strings.HasPrefix(pe.Message, "permission denied for database"):
		return pe.Message
	case errors.As(err, &pe) && pe.Code == "42501":
		return "permission denied"
	default:
		return err.Error()
	}
}
