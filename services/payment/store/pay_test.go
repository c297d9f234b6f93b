package store_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ztbank/ztbank/devkit/localpg/pgtest"
	"github.com/ztbank/ztbank/libs/db"
	"github.com/ztbank/ztbank/libs/money"
	ledgerstore "github.com/ztbank/ztbank/services/ledger/store"
	"github.com/ztbank/ztbank/services/payment/store"
)

var (
	env                     *pgtest.Env
	paymentPool, ledgerPool *pgxpool.Pool
	adminPool               *pgxpool.Pool
)

func TestMain(m *testing.M) {
	os.Exit(pgtest.Main(m, func(e *pgtest.Env) error {
		env = e
		ctx := context.Background()
		var err error
		if paymentPool, err = e.Pool(ctx, "payment_svc", "bank_b"); err != nil {
			return err
		}
		if ledgerPool, err = e.Pool(ctx, "ledger_svc", "bank_b"); err != nil {
			return err
		}
		adminPool, err = e.Admin(ctx, "bank_b")
		return err
	}))
}

// ledgerAdapter is the payment service's view of the ledger service, here backed directly by
// the ledger store on the ledger_svc pool. lose makes it drop a successful response, as a
// network failure after the ledger committed would.
type ledgerAdapter struct {
	ledger *ledgerstore.Store
	lose   func() bool
	calls  atomic.Int64
}

var errResponseLost = errors.New("connection reset after the ledger committed")

func (a *ledgerAdapter) Transfer(ctx context.Context, reference string, from, to uuid.UUID, amount money.Money, description string) (uuid.UUID, error) {
	a.calls.Add(1)
	t, err := a.ledger.Transfer(ctx, reference, from, to, amount, description)
	switch {
	case errors.Is(err, ledgerstore.ErrInsufficientFunds):
		return uuid.Nil, &store.RejectedError{Reason: "insufficient_funds"}
	case errors.Is(err, ledgerstore.ErrNotFound):
		return uuid.Nil, &store.RejectedError{Reason: "unknown_account"}
	case errors.Is(err, ledgerstore.ErrCurrencyMismatch):
		return uuid.Nil, &store.RejectedError{Reason: "currency_mismatch"}
	case err != nil:
		return uuid.Nil, err
	}
	if a.lose != nil && a.lose() {
		return uuid.Nil, errResponseLost
	}
	return t.ID, nil
}

// fundAccounts opens n customer accounts through the ledger store and funds each from a
// system account with an ordinary balanced posting.
func fundAccounts(t *testing.T, ls *ledgerstore.Store, n int, each int64) []uuid.UUID {
	t.Helper()
	ctx := t.Context()
	sys := uuid.New()
	if _, err := adminPool.Exec(ctx, `INSERT INTO ledger.accounts (id, kind, name, currency) VALUES ($1, 'system', 'funding', 'EUR')`, sys); err != nil {
		t.Fatal(err)
	}
	var ids []uuid.UUID
	for i := range n {
		a, err := ls.OpenAccount(ctx, uuid.New(), uuid.New(), fmt.Sprintf("acct-%d", i), "EUR")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ls.Transfer(ctx, "fund:"+a.ID.String(), sys, a.ID, money.Money{Amount: each, Currency: "EUR"}, "funding"); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, a.ID)
	}
	return ids
}

// fundedLedger opens n accounts funded with each (fundAccounts) and returns them with a
// counting adapter over the ledger store that holds them.
func fundedLedger(t *testing.T, n int, each int64) (*ledgerAdapter, []uuid.UUID) {
	t.Helper()
	ls := ledgerstore.New(ledgerPool)
	return &ledgerAdapter{ledger: ls}, fundAccounts(t, ls, n, each)
}

// storeAttempts is how many tries the stores below give a transaction (db.WithMaxAttempts),
// each backing off up to storeMaxDelay (db's default cap).
const storeAttempts, storeMaxDelay = 50, 250 * time.Millisecond

// clientBudget is how long payUntilDone keeps retrying: a concurrent duplicate may hold the
// key in progress for as long as the other side's whole retry schedule, twice over for
// safety. Counting tries instead (200 tries of a few ms) gave up after about half a second
// while the other side could still be backing off for 12 s.
const clientBudget = 2 * storeAttempts * storeMaxDelay

// payUntilDone is a client that retries with the same key until it gets a final answer or
// clientBudget runs out.
func payUntilDone(ctx context.Context, ps *store.Store, principal uuid.UUID, key string, req store.Request, l store.Ledger) (store.Result, error) {
	deadline := time.Now().Add(clientBudget)
	for {
		r, err := ps.Pay(ctx, principal, key, req, l)
		if err == nil {
			return r, nil
		}
		if time.Now().After(deadline) || errors.Is(err, store.ErrKeyReused) || errors.Is(err, store.ErrInvalidRequest) {
			return r, fmt.Errorf("after retrying for %v: %w", clientBudget, err)
		}
		time.Sleep(time.Duration(1+rand.IntN(5)) * time.Millisecond)
	}
}

// TestConcurrentPayments runs many clients making random payments between a few accounts,
// with lost responses, retries and duplicate concurrent submissions under the same key,
// then checks the books.
func TestConcurrentPayments(t *testing.T) {
	pgtest.Require(t)
	ctx := t.Context()
	ls := ledgerstore.New(ledgerPool, db.WithMaxAttempts(storeAttempts), db.WithBackoff(2*time.Millisecond, storeMaxDelay))
	ps := store.New(paymentPool, store.WithTxOptions(db.WithMaxAttempts(storeAttempts), db.WithBackoff(2*time.Millisecond, storeMaxDelay)))
	const (
		accounts = 5
		opening  = 100_000
		workers  = 8
		each     = 400
	)
	ids := fundAccounts(t, ls, accounts, opening)
	adapter := &ledgerAdapter{ledger: ls, lose: func() bool { return rand.IntN(100) < 5 }}

	type outcome struct {
		key    string
		result store.Result
	}
	var (
		mu       sync.Mutex
		outcomes []outcome
		replays  atomic.Int64
		dupes    atomic.Int64
	)
	var wg sync.WaitGroup
	principals := make([]uuid.UUID, workers)
	for w := range workers {
		principal := uuid.New()
		principals[w] = principal
		wg.Go(func() {
			for i := range each {
				from := rand.IntN(accounts)
				to := (from + 1 + rand.IntN(accounts-1)) % accounts
				req := store.Request{From: ids[from], To: ids[to], Amount: money.Money{Amount: 1 + rand.Int64N(30_000), Currency: "EUR"}}
				key := fmt.Sprintf("w%d-p%d", w, i)
				// Sometimes the client fires the same request twice at once (double click,
				// proxy retry); both must get the same answer.
				n := 1
				if rand.IntN(10) == 0 {
					n = 2
					dupes.Add(1)
				}
				results := make([]store.Result, n)
				errs := make([]error, n)
				var inner sync.WaitGroup
				for j := range n {
					inner.Go(func() { results[j], errs[j] = payUntilDone(ctx, ps, principal, key, req, adapter) })
				}
				inner.Wait()
				for j := range n {
					if errs[j] != nil {
						t.Errorf("%s: %v", key, errs[j])
						return
					}
					if results[j].Payment.ID != results[0].Payment.ID || results[j].Payment.Status != results[0].Payment.Status {
						t.Errorf("%s: concurrent duplicates got %v and %v", key, results[0].Payment, results[j].Payment)
					}
				}
				// A later retry of a finished request replays the original answer.
				if rand.IntN(3) == 0 {
					again, err := ps.Pay(ctx, principal, key, req, adapter)
					if err != nil {
						t.Errorf("%s: retry: %v", key, err)
					} else if !again.Replayed || again.Payment.ID != results[0].Payment.ID || again.StatusCode != results[0].StatusCode {
						t.Errorf("%s: retry returned %+v, want replay of %+v", key, again, results[0])
					} else {
						replays.Add(1)
					}
				}
				mu.Lock()
				outcomes = append(outcomes, outcome{key, results[0]})
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}

	posted, rejected := 0, 0
	for _, o := range outcomes {
		switch o.result.Payment.Status {
		case store.StatusPosted:
			posted++
		case store.StatusRejected:
			rejected++
			if o.result.StatusCode != 422 || o.result.Payment.Failure != "insufficient_funds" {
				t.Errorf("%s: rejected with %d %q", o.key, o.result.StatusCode, o.result.Payment.Failure)
			}
		default:
			t.Errorf("%s: final status %q", o.key, o.result.Payment.Status)
		}
	}
	t.Logf("%d payments: %d posted, %d rejected; %d replays, %d concurrent duplicates, %d ledger calls",
		len(outcomes), posted, rejected, replays.Load(), dupes.Load(), adapter.calls.Load())
	if len(outcomes) != workers*each || posted == 0 || rejected == 0 {
		t.Errorf("%d outcomes (%d posted, %d rejected), want %d with both kinds", len(outcomes), posted, rejected, workers*each)
	}

	// The books, read as the owner sees them.
	q := func(sql string, args ...any) int64 {
		t.Helper()
		var n int64
		if err := adminPool.QueryRow(ctx, sql, args...).Scan(&n); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
		return n
	}
	if got := q(`SELECT sum(balance) FROM ledger.accounts WHERE id = ANY($1)`, ids); got != accounts*opening {
		t.Errorf("sum of balances = %d, want %d", got, accounts*opening)
	}
	// Every count below is over this test's own rows (its accounts, its principals'
	// payments), so other tests in the package may run before or beside it.
	if got := q(`SELECT count(*) FROM ledger.accounts WHERE id = ANY($1) AND balance < 0`, ids); got != 0 {
		t.Errorf("%d negative customer balances", got)
	}
	ours := `SELECT DISTINCT transaction_id FROM ledger.entries WHERE account_id = ANY($1)`
	if got := q(`SELECT count(*) FROM (SELECT transaction_id FROM ledger.entries WHERE transaction_id IN (`+ours+`)
		GROUP BY transaction_id, currency HAVING sum(amount) <> 0 OR count(*) < 2) x`, ids); got != 0 {
		t.Errorf("%d unbalanced ledger transactions", got)
	}
	if got := q(`SELECT count(*) FROM ledger.accounts a WHERE a.id = ANY($1) AND
		balance <> (SELECT coalesce(sum(amount), 0) FROM ledger.entries e WHERE e.account_id = a.id)`, ids); got != 0 {
		t.Errorf("%d accounts whose balance is not the sum of their entries", got)
	}
	// Every posted payment has exactly one ledger transaction, rejected ones none, and
	// nothing else was posted on these accounts.
	if got := q(`SELECT count(*) FROM payments.payments p WHERE p.requested_by = ANY($1) AND
		(SELECT count(*) FROM ledger.transactions t WHERE t.reference = p.id::text) <> CASE p.status WHEN 'posted' THEN 1 ELSE 0 END`, principals); got != 0 {
		t.Errorf("%d payments not posted exactly once", got)
	}
	if got := q(`SELECT count(*) FROM ledger.transactions WHERE id IN (`+ours+`) AND reference NOT LIKE 'fund:%'`, ids); got != int64(posted) {
		t.Errorf("%d payment postings in the ledger, want %d", got, posted)
	}
	if got := q(`SELECT count(*) FROM payments.payments WHERE requested_by = ANY($1) AND status = 'pending'`, principals); got != 0 {
		t.Errorf("%d payments left pending", got)
	}
	if got := q(`SELECT count(*) FROM payments.payments WHERE requested_by = ANY($1)`, principals); got != workers*each {
		t.Errorf("%d payment rows for %d keys", got, workers*each)
	}
}

func TestSameKeyDifferentRequestIsRefused(t *testing.T) {
	pgtest.Require(t)
	ctx := t.Context()
	ps := store.New(paymentPool)
	adapter, ids := fundedLedger(t, 2, 10_000)
	principal := uuid.New()
	req := store.Request{From: ids[0], To: ids[1], Amount: money.Money{Amount: 500, Currency: "EUR"}, Reference: "rent"}
	first, err := ps.Pay(ctx, principal, "k-1", req, adapter)
	if err != nil || first.StatusCode != 201 {
		t.Fatalf("first Pay = %+v, %v", first, err)
	}
	for _, tc := range []struct {
		name   string
		change func(*store.Request)
	}{
		{"amount", func(r *store.Request) { r.Amount.Amount++ }},
		{"currency", func(r *store.Request) { r.Amount.Currency = "USD" }},
		{"reference", func(r *store.Request) { r.Reference = "rent!" }},
		{"direction", func(r *store.Request) { r.From, r.To = r.To, r.From }},
	} {
		other := req
		tc.change(&other)
		if _, err := ps.Pay(ctx, principal, "k-1", other, adapter); !errors.Is(err, store.ErrKeyReused) {
			t.Errorf("%s changed: err = %v, want ErrKeyReused", tc.name, err)
		}
	}
	// The same key from another principal is another key.
	if r, err := ps.Pay(ctx, uuid.New(), "k-1", req, adapter); err != nil || r.Replayed || r.Payment.ID == first.Payment.ID {
		t.Errorf("other principal's Pay = %+v, %v; want a new payment", r, err)
	}
	again, err := ps.Pay(ctx, principal, "k-1", req, adapter)
	if err != nil || !again.Replayed || again.Payment.ID != first.Payment.ID {
		t.Errorf("retry = %+v, %v; want replay of %s", again, err, first.Payment.ID)
	}
	if adapter.calls.Load() != 2 {
		t.Errorf("ledger called %d times, want 2 (one per new payment)", adapter.calls.Load())
	}
}

func TestFailureIsStoredAndReplayed(t *testing.T) {
	pgtest.Require(t)
	ctx := t.Context()
	ps := store.New(paymentPool)
	adapter, ids := fundedLedger(t, 2, 100)
	ls := adapter.ledger
	principal := uuid.New()
	req := store.Request{From: ids[0], To: ids[1], Amount: money.Money{Amount: 101, Currency: "EUR"}}
	first, err := ps.Pay(ctx, principal, "overdraw", req, adapter)
	if err != nil || first.StatusCode != 422 || first.Payment.Status != store.StatusRejected {
		t.Fatalf("Pay = %+v, %v; want 422 rejected", first, err)
	}
	// Money arrives; the retry must still replay the refusal, not try again.
	if _, err := ls.Transfer(ctx, "top-up", ids[1], ids[0], money.Money{Amount: 50, Currency: "EUR"}, ""); err != nil {
		t.Fatal(err)
	}
	again, err := ps.Pay(ctx, principal, "overdraw", req, adapter)
	if err != nil || !again.Replayed || again.StatusCode != 422 || again.Payment.ID != first.Payment.ID {
		t.Errorf("retry = %+v, %v; want the stored 422", again, err)
	}
	var retained bool
	if err := adminPool.QueryRow(ctx, `SELECT expires_at >= created_at + interval '24 hours' FROM payments.idempotency_keys WHERE principal = $1 AND key = 'overdraw'`, principal).Scan(&retained); err != nil || !retained {
		t.Errorf("key retained for 24h = %v, %v", retained, err)
	}
	if n, err := ps.PurgeExpired(ctx); err != nil || n != 0 {
		t.Errorf("PurgeExpired() = %d, %v; want nothing purged before 24h", n, err)
	}
	// Once past retention the key is free again.
	if _, err := adminPool.Exec(ctx, `UPDATE payments.idempotency_keys SET created_at = created_at - interval '25 hours', expires_at = expires_at - interval '25 hours' WHERE principal = $1`, principal); err != nil {
		t.Fatal(err)
	}
	if n, err := ps.PurgeExpired(ctx); err != nil || n != 1 {
		t.Errorf("PurgeExpired() = %d, %v; want 1", n, err)
	}
}

func TestInvalidRequestsAreRefusedBeforeTheLedger(t *testing.T) {
	pgtest.Require(t)
	ps := store.New(paymentPool)
	adapter := &ledgerAdapter{}
	a, b := uuid.New(), uuid.New()
	eur := func(n int64) money.Money { return money.Money{Amount: n, Currency: "EUR"} }
	for _, tc := range []struct {
		name string
		key  string
		req  store.Request
	}{
		{"same account", "k", store.Request{From: a, To: a, Amount: eur(1)}},
		{"zero", "k", store.Request{From: a, To: b, Amount: eur(0)}},
		{"negative", "k", store.Request{From: a, To: b, Amount: eur(-1)}},
		{"no currency", "k", store.Request{From: a, To: b, Amount: money.Money{Amount: 1}}},
		{"empty key", "", store.Request{From: a, To: b, Amount: eur(1)}},
		{"long key", strings.Repeat("k", 256), store.Request{From: a, To: b, Amount: eur(1)}},
		{"key with space", "a b", store.Request{From: a, To: b, Amount: eur(1)}},
	} {
		if _, err := ps.Pay(t.Context(), uuid.New(), tc.key, tc.req, adapter); !errors.Is(err, store.ErrInvalidRequest) {
			t.Errorf("%s: err = %v, want ErrInvalidRequest", tc.name, err)
		}
	}
	if adapter.calls.Load() != 0 {
		t.Error("ledger called for an invalid request")
	}
}
