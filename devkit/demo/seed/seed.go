// Package seed loads the demo users and accounts (devkit/demo) into the tenant databases. It is
// a separate step from migrations: schemas are the same in every environment, demo people
// are not. It runs as each database's owner role and is idempotent, so `make dev` can run it
// on every start.
package seed

import (
	"context"
	"fmt"
	"strings"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/ztbank/ztbank/devkit/demo"
	"github.com/ztbank/ztbank/libs/migrate"
	"github.com/ztbank/ztbank/libs/topology"
)

// SystemAccountID is the ledger account that funds a tenant's opening balances in currency.
// It is a system account, so it may go negative: its balance is minus the sum of all opening
// balances, which keeps every currency's total at zero.
func SystemAccountID(tenant, currency string) uuid.UUID {
	return demo.AccountID("system@"+tenant, "opening-"+strings.ToLower(currency))
}

// Run seeds every tenant database named in topo. adminDSN may name any database; each
// tenant's connection is derived from it. A tenant database gets the parts its schemas
// hold: users (users.users), accounts with balances (accounts.accounts), or ledger accounts
// funded by an opening-balance posting (ledger.accounts).
func Run(ctx context.Context, adminDSN string, topo *topology.Topology) error {
	cfg, err := pgx.ParseConfig(adminDSN)
	if err != nil {
		return fmt.Errorf("seed: parse admin DSN: %w", err)
	}
	for _, t := range topo.Tenants {
		c := cfg.Copy()
		c.Database = t.Database
		conn, err := pgx.ConnectConfig(ctx, c)
		if err != nil {
			return fmt.Errorf("seed %s: %w", t.Name, err)
		}
		err = seedTenant(ctx, conn, t)
		conn.Close(context.Background())
		if err != nil {
			return fmt.Errorf("seed %s: %w", t.Name, err)
		}
	}
	return nil
}

func seedTenant(ctx context.Context, conn *pgx.Conn, t topology.Tenant) error {
	return pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SET LOCAL ROLE "+pgx.Identifier{migrate.OwnerRole(t.Database)}.Sanitize()); err != nil {
			return err
		}
		has := func(table string) (bool, error) {
			var ok bool
			err := tx.QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL`, table).Scan(&ok)
			return ok, err
		}
		if ok, err := has("users.users"); err != nil {
			return err
		} else if ok {
			for _, u := range demo.Users() {
				if u.Tenant != t.Name {
					continue
				}
				if _, err := tx.Exec(ctx, `INSERT INTO users.users (id, username, display_name, role)
					VALUES ($1, $2, $3, $4) ON CONFLICT (id) DO NOTHING`, u.ID, u.Username, u.DisplayName, u.Role); err != nil {
					return fmt.Errorf("user %s: %w", u.Username, err)
				}
			}
		}
		if ok, err := has("accounts.accounts"); err != nil {
			return err
		} else if ok {
			for _, a := range demo.Accounts() {
				if a.Tenant != t.Name {
					continue
				}
				owner, _ := demo.UserByName(a.Owner)
				if _, err := tx.Exec(ctx, `INSERT INTO accounts.accounts (id, owner_id, name, currency, balance)
					VALUES ($1, $2, $3, $4, $5) ON CONFLICT (id) DO NOTHING`, a.ID, owner.ID, a.Name, a.Currency, a.Opening); err != nil {
					return fmt.Errorf("account %s: %w", a.ID, err)
				}
			}
		}
		if ok, err := has("ledger.accounts"); err != nil {
			return err
		} else if ok {
			for _, a := range demo.Accounts() {
				if a.Tenant != t.Name {
					continue
				}
				if err := seedLedgerAccount(ctx, tx, t.Name, a); err != nil {
					return fmt.Errorf("ledger account %s: %w", a.ID, err)
				}
			}
		}
		return nil
	})
}

// seedLedgerAccount opens a and posts its opening balance from the system account, once:
// the posting's reference is unique, so a second run finds it and does nothing.
func seedLedgerAccount(ctx context.Context, tx pgx.Tx, tenant string, a demo.Account) error {
	owner, _ := demo.UserByName(a.Owner)
	sys := SystemAccountID(tenant, a.Currency)
	if _, err := tx.Exec(ctx, `INSERT INTO ledger.accounts (id, kind, name, currency)
		VALUES ($1, 'system', $2, $3) ON CONFLICT (id) DO NOTHING`, sys, "opening-"+strings.ToLower(a.Currency), a.Currency); err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, `INSERT INTO ledger.accounts (id, owner_id, name, currency)
		VALUES ($1, $2, $3, $4) ON CONFLICT (id) DO NOTHING`, a.ID, owner.ID, a.Name, a.Currency); err != nil {
		return err
	}
	ref := "opening:" + a.ID.String()
	txID := demo.AccountID("system@"+tenant, ref) // deterministic, so reruns collide on it
	tag, err := tx.Exec(ctx, `INSERT INTO ledger.transactions (id, reference, description)
		VALUES ($1, $2, 'opening balance') ON CONFLICT (reference) DO NOTHING`, txID, ref)
	if err != nil || tag.RowsAffected() == 0 {
		return err
	}
	_, err = tx.Exec(ctx, `INSERT INTO ledger.entries (transaction_id, account_id, currency, amount)
		VALUES ($1, $2, $4, -$5::bigint), ($1, $3, $4, $5::bigint)`, txID, sys, a.ID, a.Currency, a.Opening)
	return err
}
