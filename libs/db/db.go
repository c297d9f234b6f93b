// Package db runs database transactions the way every ztbank store needs them: serializable
// by default, retried when PostgreSQL reports a serialization failure or deadlock, and never
// left half applied.
package db

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/ztbank/ztbank/libs/problem"
)

// ErrUnavailable wraps an error that means the database cannot be reached or is not
// accepting work right now (down, restarting, refusing the credential): a client's retry
// later can succeed. It is a problem.ErrUnavailable, so handlers answer 503 with
// Retry-After instead of 500. See ADR 0997.
var ErrUnavailable = fmt.Errorf("database unavailable: %w", problem.ErrUnavailable)

// A database error that escaped db.Transact (a store's plain pool query) is classified the
// same way when a handler writes it.
func init() { problem.RegisterUnavailable(Unavailable) }

// ErrRetriesExhausted wraps the last error when every attempt hit a retryable conflict.
// Nothing was applied and the conflicting work will finish, so it is a
// problem.ErrContended: handlers answer 503 with Retry-After (type contention), and a
// caller such as the payment service retries instead of recording a failure.
var ErrRetriesExhausted = fmt.Errorf("transaction retries exhausted: %w", problem.ErrContended)

// Beginner starts transactions; *pgxpool.Pool and *pgx.Conn both fit.
type Beginner interface {
	BeginTx(ctx context.Context, opts pgx.TxOptions) (pgx.Tx, error)
}

type options struct {
	tx          pgx.TxOptions
	maxAttempts int
	baseDelay   time.Duration
	maxDelay    time.Duration
	onRetry     func(attempt int, err error)
}

// Option configures Transact.
type Option func(*options)

// WithIsolation sets the isolation level. The default, serializable, makes every
// read-then-write safe without explicit locks; weaker levels need a reason in a comment.
func WithIsolation(l pgx.TxIsoLevel) Option { return func(o *options) { o.tx.IsoLevel = l } }

// ReadOnly marks the transaction read-only, which also lets serializable reads avoid some
// conflicts.
func ReadOnly() Option { return func(o *options) { o.tx.AccessMode = pgx.ReadOnly } }

// WithMaxAttempts bounds the number of tries, the first included (default 10).
func WithMaxAttempts(n int) Option { return func(o *options) { o.maxAttempts = max(n, 1) } }

// WithBackoff sets the first retry's delay ceiling and the cap (defaults 2ms and 250ms). Each
// retry waits a random duration up to min(cap, base·2^attempt).
func WithBackoff(base, cap time.Duration) Option {
	return func(o *options) { o.baseDelay, o.maxDelay = base, cap }
}

// OnRetry is called before each retry with the attempt that failed and its error, for
// metrics and tests.
func OnRetry(fn func(attempt int, err error)) Option { return func(o *options) { o.onRetry = fn } }

// Transact runs fn in a transaction and commits it. When PostgreSQL aborts the transaction
// with SQLSTATE 40001 (serialization failure) or 40P01 (deadlock), at fn or at commit, it
// rolls back and runs fn again after a jittered exponential backoff, so fn must have no
// effects outside tx. Any other error, or a panic, rolls back and is returned (or
// re-panicked) at once.
func Transact(ctx context.Context, db Beginner, fn func(pgx.Tx) error, opts ...Option) error {
	o := options{
		tx:          pgx.TxOptions{IsoLevel: pgx.Serializable},
		maxAttempts: 10,
		baseDelay:   2 * time.Millisecond,
		maxDelay:    250 * time.Millisecond,
	}
	for _, opt := range opts {
		opt(&o)
	}
	var err error
	for attempt := 1; ; attempt++ {
		err = once(ctx, db, o.tx, fn)
		// A connection that failed before anything was sent (pgconn.SafeToRetry: a pooled
		// connection the server closed during a restart) is retried like a conflict: the
		// pool opens a fresh one and nothing can have been applied.
		if err == nil || !(Retryable(err) || errors.Is(err, errStaleCredential) || pgconn.SafeToRetry(err)) {
			return unavailable(err)
		}
		if attempt >= o.maxAttempts {
			return unavailable(fmt.Errorf("%w (%d attempts): %w", ErrRetriesExhausted, attempt, err))
		}
		if o.onRetry != nil {
			o.onRetry(attempt, err)
		}
		ceiling := min(o.maxDelay, o.baseDelay<<min(attempt-1, 20))
		// Full jitter: contenders that collided once spread out instead of colliding again.
		delay := time.Duration(rand.Int64N(int64(ceiling) + 1))
		select {
		case <-ctx.Done():
			return fmt.Errorf("transaction retry: %w (last error: %w)", ctx.Err(), err)
		case <-time.After(delay):
		}
	}
}

func once(ctx context.Context, db Beginner, txo pgx.TxOptions, fn func(pgx.Tx) error) (err error) {
	tx, err := db.BeginTx(ctx, txo)
	if err != nil {
		if Code(err) == "28P01" {
			// A new connection raced a password rotation: it read the file just before the
			// new password was committed. Nothing ran yet, so trying again is always safe,
			// and the next read of the file has the new password.
			return fmt.Errorf("begin transaction: %w: %w", errStaleCredential, err)
		}
		return fmt.Errorf("begin transaction: %w", err)
	}
	defer func() {
		if p := recover(); p != nil {
			_ = tx.Rollback(context.WithoutCancel(ctx))
			panic(p)
		}
		if err != nil {
			// Rollback after a failed statement or commit is expected to be a no-op error.
			_ = tx.Rollback(context.WithoutCancel(ctx))
		}
	}()
	if err := fn(tx); err != nil {
		return err
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

var errStaleCredential = errors.New("connection refused a credential that was just rotated")

// unavailable marks err with ErrUnavailable when Unavailable(err).
func unavailable(err error) error {
	if err != nil && Unavailable(err) && !errors.Is(err, ErrUnavailable) {
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return err
}

// Unavailable reports whether err means the database could not be reached or would not
// take work: a failed connect (refused, reset, authentication refused — an expired
// password), a connection lost mid-way, or a server shutting down, starting up or out of
// connections (SQLSTATE classes 08 and 57P0x, 53300). A statement's own failure (a
// constraint, a syntax error, a conflict) is not.
func Unavailable(err error) bool {
	if err == nil {
		return false
	}
	var ce *pgconn.ConnectError
	if errors.As(err, &ce) {
		return true
	}
	if c := Code(err); c != "" {
		return strings.HasPrefix(c, "08") || c == "57P01" || c == "57P02" || c == "57P03" || c == "53300" || c == "28P01"
	}
	var ne net.Error
	return errors.As(err, &ne) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) ||
		errors.Is(err, net.ErrClosed) || pgconn.SafeToRetry(err)
}

// Retryable reports whether err is a serialization failure or deadlock, which PostgreSQL
// resolves by aborting one transaction and expects the client to retry.
func Retryable(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && (pe.Code == "40001" || pe.Code == "40P01")
}

// Code returns the SQLSTATE of err, or "" when err is not from PostgreSQL.
func Code(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code
	}
	return ""
}

// Constraint returns the name of the constraint err violated, or "".
func Constraint(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.ConstraintName
	}
	return ""
}
