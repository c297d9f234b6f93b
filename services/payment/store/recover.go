package store

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/ztbank/ztbank/libs/db"
)

// RecoverAfter is how long a pending payment's key must have been free (its lease run out,
// or released after a failed ledger call) before Recover decides the payment: one lease
// (the store's, WithLease; this is the default). A holder's
// ledger call is cancelled when its lease runs out (Pay), so by then no posting of the
// payment can still be in flight; the extra wait covers a cancelled call the ledger was
// already committing. See ADR 0996.
const RecoverAfter = DefaultLease

// DefaultRecoverEvery is how often the payment service runs Recover after its start-up run.
const DefaultRecoverEvery = 15 * time.Second

// FailureNotPosted is the failure of a payment Recover found abandoned before the ledger
// posted it: nobody holds it, the ledger has no posting for it, and none can arrive.
const FailureNotPosted = "not_posted"

// recoverBatch bounds one Recover pass; the next pass takes the rest.
const recoverBatch = 100

// PostingLookup tells whether the ledger holds a posting with a reference (the payment
// ID). found is false only when the ledger answered that it has none.
type PostingLookup interface {
	PostingByReference(ctx context.Context, reference string) (txID uuid.UUID, found bool, err error)
}

// RecoverStats is what one Recover pass did.
type RecoverStats struct {
	Posted, Failed, Skipped int
}

// Recover settles every pending payment nobody is working on, without any client: the
// ledger's unique reference decides it. A posting with the payment's ID means the ledger
// moved the money and only the outcome write was lost (the process died in between): the
// payment becomes posted with that transaction. No posting means the attempt died before
// the ledger posted: the payment fails with FailureNotPosted. Either way the key's response
// is stored, so a later retry with the same key replays the outcome. Recover takes the key's
// lease while it decides, so a client retry arriving meanwhile is told to retry (409), and
// it skips a key someone else took. Errors on one payment leave it for the next pass.
func (s *Store) Recover(ctx context.Context, ledger PostingLookup) (RecoverStats, error) {
	var st RecoverStats
	type candidate struct {
		id        uuid.UUID
		principal uuid.UUID
		key       string
	}
	var cands []candidate
	err := db.Transact(ctx, s.pool, func(tx pgx.Tx) error {
		cands = cands[:0]
		rows, err := tx.Query(ctx, `SELECT p.id, k.principal, k.key FROM payments.payments p
			JOIN payments.idempotency_keys k ON k.payment_id = p.id
			WHERE p.status = 'pending' AND k.state = 'in_progress'
			  AND coalesce(k.locked_until, p.updated_at) < now() - $1::interval
			ORDER BY p.created_at LIMIT $2`, s.lease, recoverBatch)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var c candidate
			if err := rows.Scan(&c.id, &c.principal, &c.key); err != nil {
				return err
			}
			cands = append(cands, c)
		}
		return rows.Err()
	}, append([]db.Option{db.ReadOnly()}, s.txOpts...)...)
	if err != nil {
		return st, fmt.Errorf("recover: list pending payments: %w", err)
	}
	var errs []error
	for _, c := range cands {
		done, err := s.recoverOne(ctx, ledger, c.id, c.principal, c.key)
		switch {
		case err != nil:
			errs = append(errs, err)
		case done == StatusPosted:
			st.Posted++
		case done == StatusRejected:
			st.Failed++
		default:
			st.Skipped++
		}
	}
	return st, errors.Join(errs...)
}

// recoverOne claims one stale key, asks the ledger and records the outcome. It returns the
// status it recorded, or "" when someone else holds or finished the key.
func (s *Store) recoverOne(ctx context.Context, ledger PostingLookup, id, principal uuid.UUID, key string) (string, error) {
	var p Payment
	claimed := false
	err := db.Transact(ctx, s.pool, func(tx pgx.Tx) error {
		claimed = false
		// The same staleness test as the listing, now under the row lock, so a retry that
		// took the key in between keeps it.
		tag, err := tx.Exec(ctx, `UPDATE payments.idempotency_keys k SET locked_until = now() + $4::interval
			FROM payments.payments p
			WHERE k.principal = $1 AND k.key = $2 AND k.payment_id = $3 AND p.id = k.payment_id
			  AND k.state = 'in_progress' AND p.status = 'pending'
			  AND coalesce(k.locked_until, p.updated_at) < now() - $5::interval`,
			principal, key, id, s.lease, s.lease)
		if err != nil {
			return fmt.Errorf("claim key: %w", err)
		}
		if tag.RowsAffected() != 1 {
			return nil
		}
		claimed = true
		p, err = getPayment(ctx, tx, id)
		return err
	}, s.txOpts...)
	if err != nil || !claimed {
		if err != nil {
			err = fmt.Errorf("recover payment %s: %w", id, err)
		}
		return "", err
	}
	lctx, cancel := context.WithTimeout(ctx, s.lease)
	txID, found, err := ledger.PostingByReference(lctx, id.String())
	cancel()
	if err != nil {
		// Undecided: give the key back as it was found (free), for the next pass or a retry.
		s.releaseKey(ctx, principal, key)
		return "", fmt.Errorf("recover payment %s: ledger lookup: %w", id, err)
	}
	result := Result{StatusCode: http.StatusCreated}
	if found {
		p.Status, p.LedgerTransactionID = StatusPosted, txID
	} else {
		p.Status, p.Failure = StatusRejected, FailureNotPosted
		result.StatusCode = http.StatusUnprocessableEntity
	}
	result.Payment = p
	out, err := s.recordOutcome(ctx, principal, key, p, result)
	if err != nil {
		return "", fmt.Errorf("recover payment %s: %w", id, err)
	}
	if out.Replayed {
		return "", nil
	}
	return p.Status, nil
}
