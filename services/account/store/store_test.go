package store_test

import (
	"context"
	"errors"
	"os"
	"sync"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ztbank/ztbank/devkit/demo"
	"github.com/ztbank/ztbank/devkit/localpg/pgtest"
	"github.com/ztbank/ztbank/services/account/store"
)

var pool *pgxpool.Pool

func TestMain(m *testing.M) {
	os.Exit(pgtest.MainSeeded(m, func(ctx context.Context, e *pgtest.Env) (err error) {
		pool, err = e.Pool(ctx, "account_svc", "bank_a")
		return err
	}))
}

func TestSeededAccounts(t *testing.T) {
	pgtest.Require(t)
	s := store.New(pool)
	alice := demo.UserID("alice@bank-a")
	got, err := s.ListByOwner(t.Context(), alice, 10)
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, a := range demo.Accounts() {
		if a.Owner == "alice@bank-a" {
			want = append(want, a.ID.String())
		}
	}
	if len(got) != len(want) {
		t.Fatalf("alice has %d accounts, want %d", len(got), len(want))
	}
	a, err := s.Get(t.Context(), demo.AccountID("alice@bank-a", "current"))
	if err != nil || a.OwnerID != alice || a.Tenant != "bank-a" || a.Balance.Amount != 250_000 {
		t.Errorf("Get(alice current) = %+v, %v", a, err)
	}
	if _, err := s.Get(t.Context(), uuid.New()); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Get(unknown) error = %v, want ErrNotFound", err)
	}
}

func TestOpen(t *testing.T) {
	pgtest.Require(t)
	ctx := t.Context()
	s := store.New(pool)
	owner := uuid.New()
	a, err := s.Open(ctx, owner, store.OpenRequest{Name: "travel", Currency: "EUR"})
	if err != nil || a.Balance.Amount != 0 || a.Tenant != "bank-a" {
		t.Fatalf("Open() = %+v, %v; want a zero-balance bank-a account", a, err)
	}
	if _, err := s.Open(ctx, owner, store.OpenRequest{Name: "travel", Currency: "USD"}); !errors.Is(err, store.ErrConflict) {
		t.Errorf("duplicate name: %v, want ErrConflict", err)
	}
	if _, err := s.Open(ctx, owner, store.OpenRequest{Name: "Bad Name", Currency: "EUR"}); !errors.Is(err, store.ErrInvalidRequest) {
		t.Errorf("bad name: %v, want ErrInvalidRequest", err)
	}
	// Concurrent opens race for the last slots; the limit must hold.
	other := uuid.New()
	var wg sync.WaitGroup
	for i := range store.MaxAccountsPerOwner + 10 {
		wg.Go(func() {
			_, err := s.Open(ctx, other, store.OpenRequest{Name: "a" + string(rune('a'+i%26)) + string(rune('a'+i/26)), Currency: "EUR"})
			if err != nil && !errors.Is(err, store.ErrLimit) {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	got, err := s.ListByOwner(ctx, other, store.MaxPageSize)
	if err != nil || len(got) != store.MaxAccountsPerOwner {
		t.Errorf("owner has %d accounts (%v), want exactly %d", len(got), err, store.MaxAccountsPerOwner)
	}
}
