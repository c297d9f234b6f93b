package store_test

import (
	"context"
	"errors"
	"runtime"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"

	"github.com/ztbank/ztbank/devkit/localpg/pgtest"
	"github.com/ztbank/ztbank/libs/money"
	ledgerstore "github.com/ztbank/ztbank/services/ledger/store"
	"github.com/ztbank/ztbank/services/payment/store"
)

// lookup is the ledger's reference lookup as the payment service sees it, over the real
// ledger store; fail makes it unreachable.
type lookup struct {
	ledger *ledgerstore.Store
	fail   bool
}

func (l *lookup) PostingByReference(ctx context.Context, reference string) (uuid.UUID, bool, error) {
	if l.fail {
		return uuid.Nil, false, errors.New("ledger unreachable")
	}
	t, err := l.ledger.TransactionByReference(ctx, reference)
	if errors.Is(err, ledgerstore.ErrNotFound) {
		return uuid.Nil, false, nil
	}
	if err != nil {
		return uuid.Nil, false, err
	}
	return t.ID, true, nil
}

// dyingLedger posts (or not) and then ends the calling goroutine, as a process dying at
// that point would: nothing after it in Pay runs.
type dyingLedger struct {
	inner     *ledgerAdapter
	postFirst bool
}

func (d dyingLedger) Transfer(ctx context.Context, reference string, from, to uuid.UUID, amount money.Money, description string) (uuid.UUID, error) {
	if d.postFirst {
		if _, err := d.inner.Transfer(ctx, reference, from, to, amount, description); err != nil {
			return uuid.Nil, err
		}
	}
	runtime.Goexit()
	return uuid.Nil, nil
}

// crash runs Pay in a goroutine that dies inside the ledger call and waits for it to end.
func crash(ps *store.Store, principal uuid.UUID, key string, req store.Request, l store.Ledger) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		ps.Pay(context.Background(), principal, key, req, l)
	}()
	<-done
}

// TestRecoverSettlesAbandonedPayments: a payment whose process died after the ledger posted
// becomes posted with the ledger's transaction, one that died before the ledger posted
// fails as not_posted, each exactly once and without a client retry; a payment still under
// its lease, or whose ledger lookup fails, stays pending. A later retry with the same key
// replays the recovered outcome and does not call the ledger.
func TestRecoverSettlesAbandonedPayments(t *testing.T) {
	pgtest.Require(t)
	ctx := t.Context()
	const lease = 300 * time.Millisecond
	ps := store.New(paymentPool, store.WithLease(lease))
	adapter, ids := fundedLedger(t, 2, 10_000)
	ls := adapter.ledger
	type outcome struct {
		Status   string
		Failure  string
		Postings int
		Replay   int
	}
	for _, tc := range []struct {
		name      string
		postFirst bool
		lookupErr bool
		want      outcome
	}{
		{"died after the ledger posted", true, false, outcome{store.StatusPosted, "", 1, 201}},
		{"died before the ledger posted", false, false, outcome{store.StatusRejected, store.FailureNotPosted, 0, 422}},
		{"ledger unreachable: stays pending", true, true, outcome{store.StatusPending, "", 1, 0}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			principal, key := uuid.New(), uuid.NewString()
			req := store.Request{From: ids[0], To: ids[1], Amount: money.Money{Amount: 7, Currency: "EUR"}}
			crash(ps, principal, key, req, dyingLedger{inner: adapter, postFirst: tc.postFirst})
			var id uuid.UUID
			if err := adminPool.QueryRow(ctx, `SELECT payment_id FROM payments.idempotency_keys WHERE principal = $1 AND key = $2`, principal, key).Scan(&id); err != nil {
				t.Fatal(err)
			}
			l := &lookup{ledger: ls, fail: tc.lookupErr}
			// Under its lease the payment is someone's: Recover must leave it.
			if st, err := ps.Recover(ctx, l); err != nil || st != (store.RecoverStats{}) {
				t.Fatalf("Recover under the lease = %+v, %v; want nothing done", st, err)
			}
			// Once the lease and the recovery wait (one lease each) are over, one pass
			// decides it. The deadline is ten times that, for a busy machine.
			deadline := time.Now().Add(20 * lease)
			for {
				st, err := ps.Recover(ctx, l)
				if tc.lookupErr {
					if err != nil {
						break
					}
				} else if err != nil {
					t.Fatal(err)
				} else if st.Posted+st.Failed > 0 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("Recover decided nothing within %s", 20*lease)
				}
				time.Sleep(lease / 10)
			}
			p, err := ps.Get(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			got := outcome{Status: p.Status, Failure: p.Failure}
			if err := adminPool.QueryRow(ctx, `SELECT count(*) FROM ledger.transactions WHERE reference = $1`, id.String()).Scan(&got.Postings); err != nil {
				t.Fatal(err)
			}
			if p.Status == store.StatusPosted {
				tx, err := ls.TransactionByReference(ctx, id.String())
				if err != nil || tx.ID != p.LedgerTransactionID {
					t.Errorf("payment records transaction %s, ledger has %+v (%v)", p.LedgerTransactionID, tx.ID, err)
				}
			}
			if tc.want.Replay != 0 {
				calls := adapter.calls.Load()
				r, err := ps.Pay(ctx, principal, key, req, adapter)
				if err != nil || !r.Replayed || r.Payment.ID != id {
					t.Errorf("retry after recovery = %+v, %v; want a replay of %s", r, err, id)
				}
				got.Replay = r.StatusCode
				if adapter.calls.Load() != calls {
					t.Errorf("retry after recovery called the ledger")
				}
				// A second pass finds nothing left to do.
				if st, err := ps.Recover(ctx, l); err != nil || st != (store.RecoverStats{}) {
					t.Errorf("second Recover = %+v, %v; want nothing", st, err)
				}
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("outcome mismatch (-want +got):\n%s", diff)
			}
		})
	}
}
