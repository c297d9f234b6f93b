package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ztbank/ztbank/devkit/localpg/pgtest"
	"github.com/ztbank/ztbank/devkit/servertest"
	"github.com/ztbank/ztbank/libs/db"
	"github.com/ztbank/ztbank/libs/problem"
	"github.com/ztbank/ztbank/services/ledger/store"
)

// losingPool is the ledger's real pool, except that every transaction begun on it loses the
// serialization race at commit: what a posting sees when many payments debit the same
// account and it is the one PostgreSQL aborts, attempt after attempt.
type losingPool struct{ *pgxpool.Pool }

func (p losingPool) BeginTx(ctx context.Context, o pgx.TxOptions) (pgx.Tx, error) {
	tx, err := p.Pool.BeginTx(ctx, o)
	if err != nil {
		return nil, err
	}
	return losingTx{tx}, nil
}

type losingTx struct{ pgx.Tx }

func (t losingTx) Commit(ctx context.Context) error {
	_ = t.Tx.Rollback(ctx)
	return &pgconn.PgError{Code: "40001", Message: "could not serialize access due to read/write dependencies among transactions"}
}

// TestContendedPostingIsRetryable: a posting that runs out of serialization retries moved
// nothing and can succeed later, so the payment service must be told to retry (503 with
// Retry-After and the contention problem type), not that the ledger failed (500).
func TestContendedPostingIsRetryable(t *testing.T) {
	pgtest.Require(t)
	h := servertest.New(t, "bank-b/ledger")
	h.Serve(NewServer(h.Runtime, nil, store.New(losingPool{ledgerPool},
		db.WithMaxAttempts(3), db.WithBackoff(time.Millisecond, time.Millisecond))))
	dave, bob := acct("dave@bank-b", "current"), acct("bob@bank-b", "current")
	before := balances(t, "dave@bank-b", "bob@bank-b")

	body := fmt.Sprintf(`{"reference":%q,"description":"hot account","currency":"EUR","entries":[{"account_id":%q,"amount":-100},{"account_id":%q,"amount":100}]}`,
		"pay-"+uuid.NewString(), dave, bob)
	got := h.Send("bank-b/payment", http.MethodPost, "/v1/postings", body,
		http.Header{"Authorization": {"Bearer " + h.Token("dave@bank-b")}})

	// What a client acts on: the status, the problem type and whether to retry.
	type answer struct {
		Status      int
		ContentType string
		Type        string
		RetryAfter  bool
	}
	var doc struct{ Type string }
	_ = json.Unmarshal([]byte(got.Body), &doc)
	want := answer{http.StatusServiceUnavailable, "application/problem+json", problem.TypeContention, true}
	if diff := cmp.Diff(want, answer{got.Status, got.Header.Get("Content-Type"), doc.Type, got.Header.Get("Retry-After") != ""}); diff != "" {
		t.Errorf("POST /v1/postings on a contended account mismatch (-want +got):\n%s\nbody: %s", diff, got.Body)
	}
	if diff := cmp.Diff(before, balances(t, "dave@bank-b", "bob@bank-b")); diff != "" {
		t.Errorf("balances after the contended posting mismatch (-want +got):\n%s", diff)
	}
}
