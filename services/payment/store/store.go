// Package store keeps the payment service's payments and Idempotency-Keys in its tenant
// database. Pay makes a payment at most once per (principal, key): the first response,
// failures included, is stored for at least 24 hours and replayed for every retry with the
// same request, a different request under the same key is refused, and money moves through
// a Ledger that is itself idempotent on the payment ID, so even a retry after a crash
// cannot debit twice.
package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/ztbank/ztbank/libs/db"
	"github.com/ztbank/ztbank/libs/money"
)

var (
	// ErrKeyReused is returned when an Idempotency-Key is presented again with a different
	// request (HTTP 422).
	ErrKeyReused = errors.New("idempotency key reused with a different request")
	// ErrInProgress is returned while another request with the same key is being processed
	// (HTTP 409); the client retries later and gets the stored result.
	ErrInProgress = errors.New("a request with this idempotency key is in progress")
	// ErrNotFound is returned for an unknown payment.
	ErrNotFound = errors.New("payment not found")
	// ErrBadTransition is returned by an Update closure that moves a payment backwards.
	ErrBadTransition = errors.New("invalid payment status change")
)

// Payment statuses.
const (
	StatusPending  = "pending"
	StatusPosted   = "posted"
	StatusRejected = "rejected"
)

// DefaultRetention is how long a key and its response are kept, the minimum the design
// allows (the database refuses less).
const DefaultRetention = 24 * time.Hour

// DefaultLease is how long a request holds its key before a retry may take over, for the
// case where the holder died mid-request.
const DefaultLease = 30 * time.Second

// Payment is a stored payment.
type Payment struct {
	ID                  uuid.UUID   `json:"id"`
	RequestedBy         uuid.UUID   `json:"requested_by"`
	From                uuid.UUID   `json:"from_account"`
	To                  uuid.UUID   `json:"to_account"`
	Amount              money.Money `json:"amount"`
	Reference           string      `json:"reference,omitempty"`
	Status              string      `json:"status"`
	Failure             string      `json:"failure,omitempty"`
	LedgerTransactionID uuid.UUID   `json:"ledger_transaction_id,omitzero"`
	CreatedAt           time.Time   `json:"created_at"`
}

// Result is the response to a payment request, as first sent and as replayed.
type Result struct {
	StatusCode int     `json:"status_code"` // 201 posted, 422 rejected
	Payment    Payment `json:"payment"`
	// Replayed is true when the result comes from the store rather than from this call.
	Replayed bool `json:"-"`
}

// RejectedError is how a Ledger reports a business refusal (insufficient funds, unknown
// account, currency mismatch). It is final: the payment is stored as rejected and the
// refusal is replayed. Any other Ledger error is treated as transient and not stored.
type RejectedError struct{ Reason string }

func (e *RejectedError) Error() string { return "rejected: " + e.Reason }

// Ledger moves money. Transfer must be idempotent on reference: calling it again with a
// reference it has posted returns that posting's ID and moves nothing.
type Ledger interface {
	Transfer(ctx context.Context, reference string, from, to uuid.UUID, amount money.Money, description string) (uuid.UUID, error)
}

// Store reads and writes the payments schema as payment_svc.
type Store struct {
	pool      db.Beginner
	retention time.Duration
	lease     time.Duration
	txOpts    []db.Option
	// afterTransfer, when set, runs after the ledger accepted a posting and before the
	// outcome is recorded: the one point where a crash leaves a posted payment pending. Only
	// the payment binary's test failpoint sets it (config.FailAfterLedgerPost).
	afterTransfer func()
}

// Option configures New.
type Option func(*Store)

// WithRetention keeps keys longer than DefaultRetention (never shorter: the database's CHECK
// refuses it).
func WithRetention(d time.Duration) Option {
	return func(s *Store) { s.retention = max(d, DefaultRetention) }
}

// WithLease sets how long a request holds its key before a retry may resume it.
func WithLease(d time.Duration) Option { return func(s *Store) { s.lease = d } }

// WithAfterTransfer runs fn between the ledger's successful reply and the outcome write
// (a failpoint for crash tests; production never sets it).
func WithAfterTransfer(fn func()) Option { return func(s *Store) { s.afterTransfer = fn } }

// WithTxOptions passes options to every retrying transaction (libs/db).
func WithTxOptions(opts ...db.Option) Option { return func(s *Store) { s.txOpts = opts } }

// New returns a Store over pool (a *pgxpool.Pool logged in as payment_svc).
func New(pool db.Beginner, opts ...Option) *Store {
	s := &Store{pool: pool, retention: DefaultRetention, lease: DefaultLease}
	for _, opt := range opts {
		opt(s)
	}
	return s
}

// Pay makes the payment req for principal under idempotency key, or replays the stored
// result of an earlier request with the same key and the same req.
func (s *Store) Pay(ctx context.Context, principal uuid.UUID, key string, req Request, ledger Ledger) (Result, error) {
	if err := ValidKey(key); err != nil {
		return Result{}, err
	}
	if err := req.Validate(); err != nil {
		return Result{}, err
	}
	hash := req.Hash()

	// 1. Claim the key (or find its stored result) and record the pending payment, in one
	// transaction so a key never exists without its payment.
	var (
		p      Payment
		stored *Result
	)
	err := db.Transact(ctx, s.pool, func(tx pgx.Tx) error {
		stored = nil
		var (
			rowHash   []byte
			paymentID uuid.UUID
			state     string
			leased    bool
			expired   bool
			response  []byte
		)
		err := tx.QueryRow(ctx, `SELECT request_hash, payment_id, state, coalesce(locked_until > now(), false),
				expires_at <= now(), response
			FROM payments.idempotency_keys WHERE principal = $1 AND key = $2 FOR UPDATE`, principal, key).
			Scan(&rowHash, &paymentID, &state, &leased, &expired, &response)
		switch {
		case errors.Is(err, pgx.ErrNoRows) || (err == nil && expired):
			if err == nil { // past retention: the key is free again
				if _, err := tx.Exec(ctx, `DELETE FROM payments.idempotency_keys WHERE principal = $1 AND key = $2`, principal, key); err != nil {
					return fmt.Errorf("drop expired key: %w", err)
				}
			}
			p = Payment{ID: uuid.New(), RequestedBy: principal, From: req.From, To: req.To, Amount: req.Amount,
				Reference: req.Reference, Status: StatusPending}
			if err := tx.QueryRow(ctx, `INSERT INTO payments.payments
				(id, requested_by, idempotency_key, from_account, to_account, amount, currency, reference, status)
				VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING created_at`,
				p.ID, principal, key, p.From, p.To, p.Amount.Amount, string(p.Amount.Currency), p.Reference, p.Status).
				Scan(&p.CreatedAt); err != nil {
				return fmt.Errorf("insert payment: %w", err)
			}
			_, err := tx.Exec(ctx, `INSERT INTO payments.idempotency_keys
				(principal, key, request_hash, payment_id, state, locked_until, created_at, expires_at)
				VALUES ($1, $2, $3, $4, 'in_progress', now() + $5::interval, now(), now() + $6::interval)`,
				principal, key, hash[:], p.ID, s.lease, s.retention)
			if err != nil {
				return fmt.Errorf("claim key: %w", err)
			}
			return nil
		case err != nil:
			return fmt.Errorf("look up key: %w", err)
		}
		if string(rowHash) != string(hash[:]) {
			return ErrKeyReused
		}
		if state == "completed" {
			stored, err = replay(response)
			return err
		}
		if leased {
			return ErrInProgress
		}
		// The previous holder gave up or died: take over its payment. The ledger's reference
		// check makes resuming safe even if the earlier attempt did post.
		if _, err := tx.Exec(ctx, `UPDATE payments.idempotency_keys SET locked_until = now() + $3::interval
			WHERE principal = $1 AND key = $2`, principal, key, s.lease); err != nil {
			return fmt.Errorf("renew lease: %w", err)
		}
		p, err = getPayment(ctx, tx, paymentID)
		return err
	}, s.txOpts...)
	if err != nil {
		return Result{}, fmt.Errorf("pay: %w", err)
	}
	if stored != nil {
		return *stored, nil
	}

	// 2. Move the money, outside any local transaction: the ledger is another service. The
	// call may not outlive the lease: once the lease has run out, a retry or the recovery
	// (Recover) may decide this payment, and neither may race a posting still in flight.
	tctx, cancel := context.WithTimeout(ctx, s.lease)
	txID, lerr := ledger.Transfer(tctx, p.ID.String(), p.From, p.To, p.Amount, p.Reference)
	cancel()
	if lerr == nil && s.afterTransfer != nil {
		s.afterTransfer()
	}
	var rejected *RejectedError
	result := Result{StatusCode: http.StatusCreated}
	switch {
	case lerr == nil:
		p.Status, p.LedgerTransactionID = StatusPosted, txID
	case errors.As(lerr, &rejected):
		p.Status, p.Failure = StatusRejected, rejected.Reason
		result.StatusCode = http.StatusUnprocessableEntity
	default:
		// Not stored: the outcome is unknown.
		s.releaseKey(ctx, principal, key)
		return Result{}, fmt.Errorf("pay %s: ledger: %w", p.ID, lerr)
	}
	result.Payment = p

	// 3. Record the outcome and store it as the key's response.
	return s.recordOutcome(ctx, principal, key, p, result)
}

// releaseKey frees a key whose payment is still undecided after a ledger call failed, so a
// client's retry (or the next Recover pass) resumes the payment at once instead of waiting
// out the lease. It runs even when ctx is cancelled; if it fails, the lease still runs out.
func (s *Store) releaseKey(ctx context.Context, principal uuid.UUID, key string) {
	release := context.WithoutCancel(ctx)
	_ = db.Transact(release, s.pool, func(tx pgx.Tx) error {
		// now(), not NULL: free at once for a retry, and the time Recover counts from.
		_, err := tx.Exec(release, `UPDATE payments.idempotency_keys SET locked_until = now()
			WHERE principal = $1 AND key = $2 AND state = 'in_progress'`, principal, key)
		return err
	}, s.txOpts...)
}

// recordOutcome writes a decided payment p and stores result as its key's response, unless
// another holder of the key (a resumed retry, the recovery) finished first: then its stored
// answer stands and is returned as a replay.
func (s *Store) recordOutcome(ctx context.Context, principal uuid.UUID, key string, p Payment, result Result) (Result, error) {
	var stored *Result
	err := db.Transact(ctx, s.pool, func(tx pgx.Tx) error {
		stored = nil
		var state string
		var response []byte
		if err := tx.QueryRow(ctx, `SELECT state, response FROM payments.idempotency_keys
			WHERE principal = $1 AND key = $2 AND payment_id = $3 FOR UPDATE`, principal, key, p.ID).Scan(&state, &response); err != nil {
			return fmt.Errorf("reload key: %w", err)
		}
		if state == "completed" { // a resumed retry finished first; its answer stands
			var err error
			stored, err = replay(response)
			return err
		}
		updated, err := update(ctx, tx, p.ID, func(cur *Payment) error {
			return cur.transition(p.Status, p.Failure, p.LedgerTransactionID)
		})
		if err != nil {
			return err
		}
		result.Payment = updated
		body, err := json.Marshal(result)
		if err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `UPDATE payments.idempotency_keys
			SET state = 'completed', locked_until = NULL, response_status = $3, response = $4
			WHERE principal = $1 AND key = $2`, principal, key, result.StatusCode, body)
		return err
	}, s.txOpts...)
	if err != nil {
		return Result{}, fmt.Errorf("pay %s: record outcome: %w", p.ID, err)
	}
	if stored != nil {
		return *stored, nil
	}
	return result, nil
}

// transition applies a status change, allowing only pending → posted or rejected.
func (p *Payment) transition(status, failure string, ledgerTx uuid.UUID) error {
	if p.Status != StatusPending || (status != StatusPosted && status != StatusRejected) {
		return fmt.Errorf("%w: %s to %s", ErrBadTransition, p.Status, status)
	}
	p.Status, p.Failure, p.LedgerTransactionID = status, failure, ledgerTx
	return nil
}

// Update loads payment id for update, lets fn change it, and writes the mutable fields
// (status, failure, ledger transaction) back, all in one retrying transaction.
func (s *Store) Update(ctx context.Context, id uuid.UUID, fn func(*Payment) error) (Payment, error) {
	var out Payment
	err := db.Transact(ctx, s.pool, func(tx pgx.Tx) error {
		var err error
		out, err = update(ctx, tx, id, fn)
		return err
	}, s.txOpts...)
	return out, err
}

func update(ctx context.Context, tx pgx.Tx, id uuid.UUID, fn func(*Payment) error) (Payment, error) {
	p, err := getPayment(ctx, tx, id, "FOR UPDATE")
	if err != nil {
		return Payment{}, err
	}
	if err := fn(&p); err != nil {
		return Payment{}, err
	}
	var ledgerTx *uuid.UUID
	if p.LedgerTransactionID != uuid.Nil {
		ledgerTx = &p.LedgerTransactionID
	}
	if _, err := tx.Exec(ctx, `UPDATE payments.payments SET status = $2, failure = $3, ledger_transaction_id = $4,
		updated_at = now() WHERE id = $1`, id, p.Status, p.Failure, ledgerTx); err != nil {
		return Payment{}, fmt.Errorf("update payment %s: %w", id, err)
	}
	return p, nil
}

// Get returns payment id.
func (s *Store) Get(ctx context.Context, id uuid.UUID) (Payment, error) {
	var p Payment
	err := db.Transact(ctx, s.pool, func(tx pgx.Tx) error {
		var err error
		p, err = getPayment(ctx, tx, id)
		return err
	}, append([]db.Option{db.ReadOnly()}, s.txOpts...)...)
	return p, err
}

func getPayment(ctx context.Context, tx pgx.Tx, id uuid.UUID, lock ...string) (Payment, error) {
	sql := `SELECT id, requested_by, from_account, to_account, amount, currency, reference, status, failure,
		ledger_transaction_id, created_at FROM payments.payments WHERE id = $1`
	if len(lock) > 0 {
		sql += " " + lock[0]
	}
	var p Payment
	var cur string
	var ledgerTx *uuid.UUID
	err := tx.QueryRow(ctx, sql, id).Scan(&p.ID, &p.RequestedBy, &p.From, &p.To, &p.Amount.Amount, &cur,
		&p.Reference, &p.Status, &p.Failure, &ledgerTx, &p.CreatedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return Payment{}, fmt.Errorf("payment %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return Payment{}, fmt.Errorf("payment %s: %w", id, err)
	}
	p.Amount.Currency = money.Currency(cur)
	if ledgerTx != nil {
		p.LedgerTransactionID = *ledgerTx
	}
	return p, nil
}

// PurgeExpired deletes keys past their retention and returns how many. The payments stay:
// they are records, the keys are only a replay cache.
func (s *Store) PurgeExpired(ctx context.Context) (int64, error) {
	var n int64
	err := db.Transact(ctx, s.pool, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `DELETE FROM payments.idempotency_keys WHERE expires_at <= now()`)
		n = tag.RowsAffected()
		return err
	}, s.txOpts...)
	return n, err
}

// replay decodes the response stored with a completed key, to be answered again as a replay.
func replay(response []byte) (*Result, error) {
	var r Result
	if err := json.Unmarshal(response, &r); err != nil {
		return nil, fmt.Errorf("stored response: %w", err)
	}
	r.Replayed = true
	return &r, nil
}
