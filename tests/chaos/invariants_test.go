package chaos

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
)

// totals is what "per-tenant totals conserved" compares: the sum of every customer balance
// per currency in each tenant's database. Payments move money between customers, so a
// run that loses or duplicates a posting changes it.
type totals map[string]int64 // "tenant/currency" → sum

// hasTable reports whether the tenant database has schema.table (a tenant runs only the
// services its topology lists).
func hasTable(ctx context.Context, c *pgx.Conn, name string) (bool, error) {
	var ok bool
	err := c.QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL`, name).Scan(&ok)
	return ok, err
}

func (e *env) connect(ctx context.Context, database string) (*pgx.Conn, error) {
	return pgx.Connect(ctx, e.st.PostgresAdminDSN(database))
}

// customerTotals reads the totals (as the database superuser: the check must not depend on
// the services it checks).
func (e *env) customerTotals(ctx context.Context) (totals, error) {
	out := totals{}
	for _, t := range e.st.Topo.Tenants {
		c, err := e.connect(ctx, t.Database)
		if err != nil {
			return nil, err
		}
		for _, q := range []struct{ table, sql string }{
			{"ledger.accounts", `SELECT currency, sum(balance)::bigint FROM ledger.accounts WHERE kind = 'customer' GROUP BY currency`},
			{"accounts.accounts", `SELECT currency, sum(balance)::bigint FROM accounts.accounts GROUP BY currency`},
		} {
			ok, err := hasTable(ctx, c, q.table)
			if err != nil || !ok {
				continue
			}
			rows, err := c.Query(ctx, q.sql)
			if err != nil {
				c.Close(ctx)
				return nil, err
			}
			for rows.Next() {
				var cur string
				var sum int64
				if err := rows.Scan(&cur, &sum); err != nil {
					rows.Close()
					c.Close(ctx)
					return nil, err
				}
				out[t.Name+"/"+q.table+"/"+cur] = sum
			}
			rows.Close()
		}
		c.Close(ctx)
	}
	return out, nil
}

// errPending is returned by checkInvariants while payments are still pending; callers wait
// for it to clear (recovery settles them) before calling the run a failure.
var errPending = errors.New("payments still pending")

// checkInvariants checks, in every tenant database: totals equal want; no customer balance
// is negative; the ledger is balanced (every account's balance is the sum of its entries and
// every currency sums to zero); every posted payment has exactly one ledger transaction
// whose reference is the payment's ID and it is the recorded one; no rejected payment has a
// posting; no payment is pending.
func (e *env) checkInvariants(ctx context.Context, want totals) error {
	got, err := e.customerTotals(ctx)
	if err != nil {
		return err
	}
	var problems []string
	for k, v := range want {
		if got[k] != v {
			problems = append(problems, fmt.Sprintf("total %s is %d, want %d", k, got[k], v))
		}
	}
	pending := 0
	for _, t := range e.st.Topo.Tenants {
		c, err := e.connect(ctx, t.Database)
		if err != nil {
			return err
		}
		checks := []struct{ table, what, sql string }{
			{"ledger.accounts", "negative customer balances", `SELECT count(*) FROM ledger.accounts WHERE kind = 'customer' AND balance < 0`},
			{"accounts.accounts", "negative balances", `SELECT count(*) FROM accounts.accounts WHERE balance < 0`},
			{"ledger.entries", "accounts whose balance is not the sum of their entries", `SELECT count(*) FROM ledger.accounts a
				WHERE a.balance <> coalesce((SELECT sum(amount) FROM ledger.entries e WHERE e.account_id = a.id), 0)`},
			{"ledger.entries", "currencies that do not sum to zero", `SELECT count(*) FROM (SELECT currency FROM ledger.accounts GROUP BY currency HAVING sum(balance) <> 0) x`},
			{"payments.payments", "posted payments without exactly one matching ledger transaction", `SELECT count(*) FROM payments.payments p
				WHERE p.status = 'posted' AND (SELECT count(*) FROM ledger.transactions t WHERE t.reference = p.id::text AND t.id = p.ledger_transaction_id) <> 1`},
			{"payments.payments", "rejected payments with a ledger posting", `SELECT count(*) FROM payments.payments p
				WHERE p.status = 'rejected' AND EXISTS (SELECT 1 FROM ledger.transactions t WHERE t.reference = p.id::text)`},
			{"payments.payments", "ledger postings of payments that are not recorded as posted", `SELECT count(*) FROM ledger.transactions t
				JOIN payments.payments p ON t.reference = p.id::text WHERE p.status = 'rejected'
				OR (p.status = 'posted' AND p.ledger_transaction_id <> t.id)`},
		}
		for _, ch := range checks {
			ok, err := hasTable(ctx, c, ch.table)
			if err != nil || !ok {
				continue
			}
			if ch.table == "payments.payments" {
				if ok, _ := hasTable(ctx, c, "ledger.transactions"); !ok {
					continue
				}
			}
			var n int
			if err := c.QueryRow(ctx, ch.sql).Scan(&n); err != nil {
				c.Close(ctx)
				return fmt.Errorf("%s: %s: %w", t.Name, ch.what, err)
			}
			if n > 0 {
				problems = append(problems, fmt.Sprintf("%s: %d %s", t.Name, n, ch.what))
			}
		}
		if ok, _ := hasTable(ctx, c, "payments.payments"); ok {
			var n int
			if err := c.QueryRow(ctx, `SELECT count(*) FROM payments.payments WHERE status = 'pending'`).Scan(&n); err != nil {
				c.Close(ctx)
				return err
			}
			pending += n
		}
		c.Close(ctx)
	}
	if len(problems) > 0 {
		return errors.New(strings.Join(problems, "; "))
	}
	if pending > 0 {
		return fmt.Errorf("%w: %d", errPending, pending)
	}
	return nil
}
