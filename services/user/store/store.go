// Package store looks up the tenant's users in the users schema as user_svc, which may only
// read: users are created by onboarding (here, the seed step), never by the service.
package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/ztbank/ztbank/libs/db"
)

// ErrNotFound is returned for an unknown user.
var ErrNotFound = errors.New("user not found")

// User is one person of the tenant.
type User struct {
	ID          uuid.UUID `json:"id"`
	Tenant      string    `json:"tenant"`
	Username    string    `json:"username"`
	DisplayName string    `json:"display_name"`
	Role        string    `json:"role"`
	CreatedAt   time.Time `json:"created_at"`
}

// Store reads users.
type Store struct {
	pool db.Beginner
}

// New returns a Store over pool (a *pgxpool.Pool logged in as user_svc).
func New(pool db.Beginner) *Store { return &Store{pool: pool} }

// Get returns user id.
func (s *Store) Get(ctx context.Context, id uuid.UUID) (User, error) {
	var u User
	err := db.Transact(ctx, s.pool, func(tx pgx.Tx) error {
		return tx.QueryRow(ctx, `SELECT id, tenant, username, display_name, role, created_at
			FROM users.users WHERE id = $1`, id).Scan(&u.ID, &u.Tenant, &u.Username, &u.DisplayName, &u.Role, &u.CreatedAt)
	}, db.ReadOnly())
	if errors.Is(err, pgx.ErrNoRows) {
		return User{}, fmt.Errorf("user %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return User{}, fmt.Errorf("user %s: %w", id, err)
	}
	return u, nil
}
