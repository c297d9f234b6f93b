package seed_test

import (
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5"

	"github.com/ztbank/ztbank/devkit/demo"
	"github.com/ztbank/ztbank/devkit/demo/seed"
	"github.com/ztbank/ztbank/devkit/localpg/pgtest"
)

var env *pgtest.Env

func TestMain(m *testing.M) {
	os.Exit(pgtest.Main(m, func(e *pgtest.Env) error { env = e; return nil }))
}

func TestSeedIsIdempotentAndMatchesDemo(t *testing.T) {
	pgtest.Require(t)
	ctx := t.Context()
	for range 2 {
		if err := seed.Run(ctx, env.Cluster.AdminDSN("postgres"), env.Topology); err != nil {
			t.Fatal(err)
		}
	}
	type row struct {
		Owner, Name string
		Balance     int64
	}
	var want []row
	for _, a := range demo.Accounts() {
		want = append(want, row{demo.UserID(a.Owner).String(), a.Name, a.Opening})
	}
	// Read back as the services would, through their own roles.
	var got []row
	for _, q := range []struct{ role, db, sql string }{
		{"account_svc", "bank_a", `SELECT owner_id::text, name, balance FROM accounts.accounts ORDER BY owner_id, name`},
		{"ledger_svc", "bank_b", `SELECT owner_id::text, name, balance FROM ledger.accounts WHERE kind = 'customer' ORDER BY owner_id, name`},
	} {
		pool, err := env.Pool(ctx, q.role, q.db)
		if err != nil {
			t.Fatal(err)
		}
		rows, _ := pool.Query(ctx, q.sql)
		r, err := pgx.CollectRows(rows, pgx.RowToStructByPos[row])
		pool.Close()
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, r...)
	}
	byOwnerName := func(a, b row) int { return strings.Compare(a.Owner+a.Name, b.Owner+b.Name) }
	slices.SortFunc(want, byOwnerName)
	slices.SortFunc(got, byOwnerName)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("seeded accounts mismatch (-want +got):\n%s", diff)
	}

	admin, err := env.Admin(ctx, "bank_b")
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	var total, entries int64
	if err := admin.QueryRow(ctx, `SELECT sum(balance), (SELECT count(*) FROM ledger.entries) FROM ledger.accounts`).Scan(&total, &entries); err != nil {
		t.Fatal(err)
	}
	if total != 0 || entries != 2*3 {
		t.Errorf("ledger total %d with %d entries, want 0 with 6 (one opening posting per bank-b account)", total, entries)
	}
	users, err := env.Pool(ctx, "user_svc", "bank_a")
	if err != nil {
		t.Fatal(err)
	}
	defer users.Close()
	var id string
	if err := users.QueryRow(ctx, `SELECT id::text FROM users.users WHERE username = 'alice@bank-a'`).Scan(&id); err != nil {
		t.Fatal(err)
	}
	if id != demo.UserID("alice@bank-a").String() {
		t.Errorf("alice's ID %s, want %s", id, demo.UserID("alice@bank-a"))
	}
}
