package store_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ztbank/ztbank/devkit/localpg/pgtest"
	"github.com/ztbank/ztbank/libs/db"
	"github.com/ztbank/ztbank/libs/money"
	"github.com/ztbank/ztbank/services/ledger/store"
)

var pool, admin *pgxpool.Pool

func TestMain(m *testing.M) {
	os.Exit(pgtest.Main(m, func(e *pgtest.Env) error {
		ctx := context.Background()
		var err error
		if pool, err = e.Pool(ctx, "ledger_svc", "bank_b"); err != nil {
			return err
		}
		admin, err = e.Admin(ctx, "bank_b")
		return err
	}))
}

func eur(n int64) money.Money { return money.Money{Amount: n, Currency: "EUR"} }

// accounts opens a system account and n customer accounts, each funded with balance.
func accounts(t *testing.T, s *store.Store, n int, balance int64) (uuid.UUID, []uuid.UUID) {
	t.Helper()
	ctx := t.Context()
	sys := uuid.New()
	if _, err := admin.Exec(ctx, `INSERT INTO ledger.accounts (id, kind, name, currency) VALUES ($1, 'system', 'funding', 'EUR')`, sys); err != nil {
		t.Fatal(err)
	}
	var ids []uuid.UUID
	for range n {
		a, err := s.OpenAccount(ctx, uuid.New(), uuid.New(), "main", "EUR")
		if err != nil {
			t.Fatal(err)
		}
		if balance > 0 {
			if _, err := s.Transfer(ctx, "fund:"+a.ID.String(), sys, a.ID, eur(balance), ""); err != nil {
				t.Fatal(err)
			}
		}
		ids = append(ids, a.ID)
	}
	return sys, ids
}

func TestPostRules(t *testing.T) {
	pgtest.Require(t)
	ctx := t.Context()
	s := store.New(pool)
	_, ids := accounts(t, s, 3, 1_000)
	usd, err := s.OpenAccount(ctx, uuid.New(), uuid.New(), "dollars", "USD")
	if err != nil {
		t.Fatal(err)
	}
	a, b, c := ids[0], ids[1], ids[2]
	for _, tc := range []struct {
		name string
		tx   store.Transaction
		want error
	}{
		{"balanced three-way", store.Transaction{Reference: "r1", Currency: "EUR", Postings: []store.Posting{{a, -300}, {b, 100}, {c, 200}}}, nil},
		{"unbalanced", store.Transaction{Reference: "r2", Currency: "EUR", Postings: []store.Posting{{a, -300}, {b, 200}}}, store.ErrInvalid},
		{"single entry", store.Transaction{Reference: "r3", Currency: "EUR", Postings: []store.Posting{{a, 0}}}, store.ErrInvalid},
		{"same account twice", store.Transaction{Reference: "r4", Currency: "EUR", Postings: []store.Posting{{a, -1}, {a, 1}}}, store.ErrInvalid},
		{"entry without an account", store.Transaction{Reference: "r4b", Currency: "EUR", Postings: []store.Posting{{uuid.Nil, -1}, {a, 1}}}, store.ErrInvalid},
		{"overdraw", store.Transaction{Reference: "r5", Currency: "EUR", Postings: []store.Posting{{a, -701}, {b, 701}}}, store.ErrInsufficientFunds},
		{"currency mismatch", store.Transaction{Reference: "r6", Currency: "EUR", Postings: []store.Posting{{a, -1}, {usd.ID, 1}}}, store.ErrCurrencyMismatch},
		{"unknown account", store.Transaction{Reference: "r7", Currency: "EUR", Postings: []store.Posting{{a, -1}, {uuid.New(), 1}}}, store.ErrNotFound},
		{"no reference", store.Transaction{Currency: "EUR", Postings: []store.Posting{{a, -1}, {b, 1}}}, store.ErrInvalid},
		{"replay", store.Transaction{Reference: "r1", Currency: "EUR", Postings: []store.Posting{{c, 200}, {a, -300}, {b, 100}}}, nil},
		{"reference reused", store.Transaction{Reference: "r1", Currency: "EUR", Postings: []store.Posting{{a, -1}, {b, 1}}}, store.ErrReferenceConflict},
		// Lengths count characters, as the table's CHECK does; the two postings cancel out.
		{"description of 200 two-byte characters", store.Transaction{Reference: "r8", Description: strings.Repeat("é", store.MaxDescriptionLen), Currency: "EUR", Postings: []store.Posting{{b, -1}, {c, 1}}}, nil},
		{"description of 200 four-byte characters", store.Transaction{Reference: "r9", Description: strings.Repeat("😀", store.MaxDescriptionLen), Currency: "EUR", Postings: []store.Posting{{c, -1}, {b, 1}}}, nil},
		{"description of 201 characters", store.Transaction{Reference: "r10", Description: strings.Repeat("é", store.MaxDescriptionLen+1), Currency: "EUR", Postings: []store.Posting{{b, -1}, {c, 1}}}, store.ErrInvalid},
		{"description with a right-to-left override", store.Transaction{Reference: "r11", Description: "rent \u202efdp.exe", Currency: "EUR", Postings: []store.Posting{{b, -1}, {c, 1}}}, store.ErrInvalid},
		{"description with a C1 control", store.Transaction{Reference: "r12", Description: "rent\u009b", Currency: "EUR", Postings: []store.Posting{{b, -1}, {c, 1}}}, store.ErrInvalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := s.Post(ctx, tc.tx)
			if !errors.Is(err, tc.want) || (tc.want == nil && err != nil) {
				t.Errorf("Post() error = %v, want %v", err, tc.want)
			}
		})
	}
	var got []int64
	for _, id := range ids {
		acct, err := s.Account(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, acct.Balance.Amount)
	}
	if diff := cmp.Diff([]int64{700, 1_100, 1_200}, got); diff != "" {
		t.Errorf("balances mismatch (-want +got):\n%s", diff)
	}
}

// TestDatabaseEnforcesBalance bypasses the store: even with direct SQL, ledger_svc cannot
// commit an unbalanced transaction, overdraw an account, or change a balance by hand.
func TestDatabaseEnforcesBalance(t *testing.T) {
	pgtest.Require(t)
	ctx := t.Context()
	s := store.New(pool)
	_, ids := accounts(t, s, 2, 100)
	txID := uuid.New()
	for _, tc := range []struct {
		name, sql string
		args      []any
		want      string // SQLSTATE
	}{
		{"unbalanced at commit", `INSERT INTO ledger.transactions (id, reference) VALUES ($1, 'raw-1');
			INSERT INTO ledger.entries (transaction_id, account_id, currency, amount) VALUES ($1, $2, 'EUR', 50)`,
			[]any{txID, ids[0]}, "23514"},
		{"overdraw", `INSERT INTO ledger.transactions (id, reference) VALUES ($1, 'raw-2');
			INSERT INTO ledger.entries (transaction_id, account_id, currency, amount) VALUES ($1, $2, 'EUR', -101), ($1, $3, 'EUR', 101)`,
			[]any{uuid.New(), ids[0], ids[1]}, "23514"},
		{"wrong currency", `INSERT INTO ledger.transactions (id, reference) VALUES ($1, 'raw-3');
			INSERT INTO ledger.entries (transaction_id, account_id, currency, amount) VALUES ($1, $2, 'USD', -1), ($1, $3, 'USD', 1)`,
			[]any{uuid.New(), ids[0], ids[1]}, "23503"},
		{"set balance", `UPDATE ledger.accounts SET balance = 1000000 WHERE id = $1`, []any{ids[0]}, "42501"},
		{"rewrite history", `UPDATE ledger.entries SET amount = amount * 2`, nil, "42501"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tx, err := pool.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer tx.Rollback(ctx)
			// Multiple statements need the simple protocol, which takes no parameters, so
			// they run one by one.
			for _, stmt := range splitStatements(tc.sql) {
				if _, err = tx.Exec(ctx, stmt, argsFor(stmt, tc.args)...); err != nil {
					break
				}
			}
			if err == nil {
				err = tx.Commit(ctx)
			}
			if got := db.Code(err); got != tc.want {
				t.Errorf("error %v (SQLSTATE %q), want SQLSTATE %s", err, got, tc.want)
			}
		})
	}
	acct, _ := s.Account(ctx, ids[0])
	if acct.Balance.Amount != 100 {
		t.Errorf("balance after refused writes = %d, want 100", acct.Balance.Amount)
	}
}

func splitStatements(sql string) []string {
	var out []string
	for _, s := range strings.Split(sql, ";") {
		if strings.TrimSpace(s) != "" {
			out = append(out, s)
		}
	}
	return out
}

// argsFor passes only as many arguments as the statement references ($1..$n).
func argsFor(stmt string, args []any) []any {
	n := 0
	for i := 1; i <= len(args); i++ {
		if strings.Contains(stmt, fmt.Sprintf("$%d", i)) {
			n = i
		}
	}
	return args[:n]
}

func TestEntriesPagination(t *testing.T) {
	pgtest.Require(t)
	ctx := t.Context()
	s := store.New(pool)
	_, ids := accounts(t, s, 2, 1_000)
	for i := range 7 {
		if _, err := s.Transfer(ctx, "page-"+uuid.NewString(), ids[0], ids[1], eur(int64(i+1)), ""); err != nil {
			t.Fatal(err)
		}
	}
	var amounts []int64
	var after int64
	pages := 0
	for {
		page, next, err := s.Entries(ctx, ids[1], after, 3)
		if err != nil {
			t.Fatal(err)
		}
		pages++
		for _, e := range page {
			amounts = append(amounts, e.Amount.Amount)
		}
		if next == 0 {
			break
		}
		after = next
	}
	if diff := cmp.Diff([]int64{1_000, 1, 2, 3, 4, 5, 6, 7}, amounts); diff != "" {
		t.Errorf("entries mismatch (-want +got):\n%s", diff)
	}
	if pages != 3 {
		t.Errorf("%d pages of 3 for 8 entries, want 3", pages)
	}
	if _, _, err := s.Entries(ctx, ids[1], 0, store.MaxPageSize+1); !errors.Is(err, store.ErrInvalid) {
		t.Errorf("oversized page: %v, want ErrInvalid", err)
	}
}

// BenchmarkTransfer measures one serializable two-entry posting between two accounts,
// through the ledger_svc pool over TLS (uncontended).
func BenchmarkTransfer(b *testing.B) {
	pgtest.Require(b)
	s := store.New(pool)
	ctx := context.Background()
	sys := uuid.New()
	if _, err := admin.Exec(ctx, `INSERT INTO ledger.accounts (id, kind, name, currency) VALUES ($1, 'system', 'bench', 'EUR')`, sys); err != nil {
		b.Fatal(err)
	}
	to, err := s.OpenAccount(ctx, uuid.New(), uuid.New(), "bench", "EUR")
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := s.Transfer(ctx, uuid.NewString(), sys, to.ID, eur(1), ""); err != nil {
			b.Fatal(err)
		}
	}
}
