package db_test

import (
	"context"
	"errors"
	"os"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ztbank/ztbank/devkit/localpg/pgtest"
	"github.com/ztbank/ztbank/libs/db"
	"github.com/ztbank/ztbank/libs/problem"
)

var pool *pgxpool.Pool

func TestMain(m *testing.M) {
	os.Exit(pgtest.Main(m, func(e *pgtest.Env) error {
		ctx := context.Background()
		admin, err := e.Admin(ctx, "postgres")
		if err != nil {
			return err
		}
		defer admin.Close()
		if _, err := admin.Exec(ctx, `CREATE DATABASE dbtest`); err != nil {
			return err
		}
		pool, err = e.Admin(ctx, "dbtest")
		if err != nil {
			return err
		}
		_, err = pool.Exec(ctx, `CREATE TABLE counters (id int PRIMARY KEY, n bigint NOT NULL)`)
		return err
	}))
}

// TestSerializationFailuresAreRetried makes many transactions read-modify-write one row under
// SERIALIZABLE. PostgreSQL aborts all but one of each colliding group with 40001; Transact
// must retry them so that every increment lands exactly once.
func TestSerializationFailuresAreRetried(t *testing.T) {
	pgtest.Require(t)
	ctx := t.Context()
	if _, err := pool.Exec(ctx, `INSERT INTO counters VALUES (1, 0)`); err != nil {
		t.Fatal(err)
	}
	var retries atomic.Int64
	const workers, each = 8, 25
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for range each {
				err := db.Transact(ctx, pool, func(tx pgx.Tx) error {
					var n int64
					if err := tx.QueryRow(ctx, `SELECT n FROM counters WHERE id = 1`).Scan(&n); err != nil {
						return err
					}
					_, err := tx.Exec(ctx, `UPDATE counters SET n = $1 WHERE id = 1`, n+1)
					return err
				}, db.WithMaxAttempts(100), db.OnRetry(func(int, error) { retries.Add(1) }))
				if err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	var n int64
	if err := pool.QueryRow(ctx, `SELECT n FROM counters WHERE id = 1`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != workers*each {
		t.Errorf("counter = %d, want %d", n, workers*each)
	}
	if retries.Load() == 0 {
		t.Error("no retries: the test did not produce serialization failures")
	}
	t.Logf("%d increments needed %d retries", n, retries.Load())
}

func TestOtherErrorsAreNotRetried(t *testing.T) {
	pgtest.Require(t)
	calls := 0
	boom := errors.New("business rule")
	err := db.Transact(t.Context(), pool, func(tx pgx.Tx) error { calls++; return boom })
	if !errors.Is(err, boom) || calls != 1 {
		t.Errorf("Transact() = %v after %d calls, want %v after 1", err, calls, boom)
	}
	calls = 0
	err = db.Transact(t.Context(), pool, func(tx pgx.Tx) error {
		calls++
		_, err := tx.Exec(t.Context(), `INSERT INTO counters VALUES (2, 0), (2, 0)`)
		return err
	})
	if db.Code(err) != "23505" || calls != 1 {
		t.Errorf("Transact() = %v after %d calls, want unique violation after 1", err, calls)
	}
}

func TestRetriesAreBounded(t *testing.T) {
	pgtest.Require(t)
	calls := 0
	err := db.Transact(t.Context(), pool, func(tx pgx.Tx) error {
		calls++
		_, err := tx.Exec(t.Context(), `DO $$ BEGIN RAISE EXCEPTION 'conflict' USING ERRCODE = '40001'; END $$`)
		return err
	}, db.WithMaxAttempts(3))
	if !errors.Is(err, db.ErrRetriesExhausted) || calls != 3 || db.Code(err) != "40001" {
		t.Errorf("Transact() = %v after %d calls, want ErrRetriesExhausted wrapping 40001 after 3", err, calls)
	}
	// Nothing was applied and the conflicting work will finish: a retry later can succeed.
	if d := problem.From(err); d.Status != 503 || d.Type != problem.TypeContention {
		t.Errorf("problem.From(%v) = %d %s, want 503 %s", err, d.Status, d.Type, problem.TypeContention)
	}
}

func TestRollbackOnError(t *testing.T) {
	pgtest.Require(t)
	ctx := t.Context()
	_ = db.Transact(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO counters VALUES (3, 0)`); err != nil {
			return err
		}
		return errors.New("abort")
	})
	var exists bool
	if err := pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM counters WHERE id = 3)`).Scan(&exists); err != nil {
		t.Fatal(err)
	}
	if exists {
		t.Error("row from an aborted transaction was committed")
	}
}
