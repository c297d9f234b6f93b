package store_test

import (
	"context"
	"errors"
	"os"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ztbank/ztbank/devkit/demo"
	"github.com/ztbank/ztbank/devkit/localpg/pgtest"
	"github.com/ztbank/ztbank/services/user/store"
)

var pool *pgxpool.Pool

func TestMain(m *testing.M) {
	os.Exit(pgtest.MainSeeded(m, func(ctx context.Context, e *pgtest.Env) (err error) {
		pool, err = e.Pool(ctx, "user_svc", "bank_a")
		return err
	}))
}

func TestGet(t *testing.T) {
	pgtest.Require(t)
	s := store.New(pool)
	for _, u := range demo.Users() {
		got, err := s.Get(t.Context(), u.ID)
		if u.Tenant != "bank-a" {
			// bank-b people live in bank-b's identity provider only, never in bank_a.
			if !errors.Is(err, store.ErrNotFound) {
				t.Errorf("%s: Get() = %+v, %v; want ErrNotFound", u.Username, got, err)
			}
			continue
		}
		want := store.User{ID: u.ID, Tenant: u.Tenant, Username: u.Username, DisplayName: u.DisplayName, Role: u.Role}
		if diff := cmp.Diff(want, got, cmpopts.IgnoreFields(store.User{}, "CreatedAt")); diff != "" {
			t.Errorf("Get(%s) mismatch (-want +got):\n%s", u.Username, diff)
		}
	}
	if _, err := s.Get(t.Context(), uuid.New()); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("unknown user: %v, want ErrNotFound", err)
	}
}
