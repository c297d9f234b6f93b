// Package store keeps the tenant's accounts in the accounts schema, read and written as
// account_svc. The service may open accounts and read them; it cannot set a balance, which
// the grants in the tenant database's migration 0003 (migrations/<database>/) leave to the owner.
package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/ztbank/ztbank/libs/db"
	"github.com/ztbank/ztbank/libs/money"
)

var (
	// ErrNotFound is returned for an unknown account.
	ErrNotFound = errors.New("account not found")
	// ErrConflict is returned when the owner already has an account with that name.
	ErrConflict = errors.New("account name already in use")
	// ErrLimit is returned when the owner already holds MaxAccountsPerOwner accounts.
	ErrLimit = errors.New("too many accounts")
)

// Bounds.
const (
	MaxAccountsPerOwner = 20
	MaxPageSize         = 100
)

// Account is one customer account.
type Account struct {
	ID       uuid.UUID   `json:"id"`
	OwnerID  uuid.UUID   `json:"owner_id"`
	Tenant   string      `json:"tenant"`
	Name     string      `json:"name"`
	Balance  money.Money `json:"balance"`
	OpenedAt time.Time   `json:"opened_at"`
}

// Store reads and writes accounts.
type Store struct {
	pool db.Beginner
	opts []db.Option
}

// New returns a Store over pool (a *pgxpool.Pool logged in as account_svc).
func New(pool db.Beginner, opts ...db.Option) *Store { return &Store{pool: pool, opts: opts} }

const columns = `id, owner_id, tenant, name, currency, balance, opened_at`

func scan(row pgx.Row) (Account, error) {
	var a Account
	var cur string
	err := row.Scan(&a.ID, &a.OwnerID, &a.Tenant, &a.Name, &cur, &a.Balance.Amount, &a.OpenedAt)
	a.Balance.Currency = money.Currency(cur)
	return a, err
}

// Get returns account id. Callers check a.OwnerID and a.Tenant against the caller before
// showing it (the authorisation input carries both).
func (s *Store) Get(ctx context.Context, id uuid.UUID) (Account, error) {
	var a Account
	err := db.Transact(ctx, s.pool, func(tx pgx.Tx) error {
		var err error
		a, err = scan(tx.QueryRow(ctx, `SELECT `+columns+` FROM accounts.accounts WHERE id = $1`, id))
		return err
	}, append([]db.Option{db.ReadOnly()}, s.opts...)...)
	if errors.Is(err, pgx.ErrNoRows) {
		return Account{}, fmt.Errorf("account %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return Account{}, fmt.Errorf("account %s: %w", id, err)
	}
	return a, nil
}

// ListByOwner returns up to limit of owner's accounts in opening order.
func (s *Store) ListByOwner(ctx context.Context, owner uuid.UUID, limit int) ([]Account, error) {
	if limit <= 0 || limit > MaxPageSize {
		return nil, fmt.Errorf("page size %d, want 1 to %d", limit, MaxPageSize)
	}
	var out []Account
	err := db.Transact(ctx, s.pool, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT `+columns+` FROM accounts.accounts WHERE owner_id = $1
			ORDER BY opened_at, id LIMIT $2`, owner, limit)
		if err != nil {
			return err
		}
		out, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (Account, error) { return scan(r) })
		return err
	}, append([]db.Option{db.ReadOnly()}, s.opts...)...)
	if err != nil {
		return nil, fmt.Errorf("list accounts: %w", err)
	}
	return out, nil
}

// Open creates an account for owner with a zero balance. The per-owner limit is checked in
// the same serializable transaction as the insert, so concurrent opens cannot exceed it.
func (s *Store) Open(ctx context.Context, owner uuid.UUID, req OpenRequest) (Account, error) {
	if err := req.Validate(); err != nil {
		return Account{}, err
	}
	var a Account
	err := db.Transact(ctx, s.pool, func(tx pgx.Tx) error {
		var n int
		if err := tx.QueryRow(ctx, `SELECT count(*) FROM accounts.accounts WHERE owner_id = $1`, owner).Scan(&n); err != nil {
			return err
		}
		if n >= MaxAccountsPerOwner {
			return ErrLimit
		}
		var err error
		a, err = scan(tx.QueryRow(ctx, `INSERT INTO accounts.accounts (id, owner_id, name, currency)
			VALUES ($1, $2, $3, $4) RETURNING `+columns, uuid.New(), owner, req.Name, req.Currency))
		return err
	}, s.opts...)
	if db.Code(err) == "23505" {
		return Account{}, fmt.Errorf("open %q: %w", req.Name, ErrConflict)
	}
	if err != nil {
		return Account{}, fmt.Errorf("open %q: %w", req.Name, err)
	}
	return a, nil
}
