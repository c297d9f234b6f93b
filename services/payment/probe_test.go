package main

import (
	"encoding/json"
	"net/http"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"

	"github.com/ztbank/ztbank/devkit/demo"
	"github.com/ztbank/ztbank/devkit/localpg/pgtest"
)

// TestRejectionsDoNotRevealPayee: a customer paying an account it cannot see learns nothing
// about that account from the refusal. A payee that does not exist and one in another
// currency get the same status, content type and body (bar the new payment's ID), and the
// stored payment reads the same; with too little money the answer is insufficient_funds
// whatever the payee. Before the fix the three read unknown_account, currency_mismatch and
// insufficient_funds, an oracle for any account ID's existence and currency.
func TestRejectionsDoNotRevealPayee(t *testing.T) {
	pgtest.Require(t)
	s := newStack(t)
	ctx := t.Context()
	dave := acct("dave@bank-b", "current")
	usd, err := ledgerStore.OpenAccount(ctx, uuid.New(), demo.UserID("bob@bank-b"), "usd-"+uuid.NewString()[:8], "USD")
	if err != nil {
		t.Fatal(err)
	}
	daveUSD, err := ledgerStore.OpenAccount(ctx, uuid.New(), demo.UserID("dave@bank-b"), "usd-"+uuid.NewString()[:8], "USD")
	if err != nil {
		t.Fatal(err)
	}
	payees := map[string]string{
		"unknown payee":              uuid.NewString(),
		"payee in another currency":  usd.ID.String(),
		"payee in the same currency": acct("bob@bank-b", "current"),
	}
	type answer struct {
		Status      int
		ContentType string
		Body        map[string]any
		Stored      map[string]any
	}
	// send pays amount from dave's account to each payee and returns the answers with the
	// parts that differ by construction (the payment's own ID) blanked.
	send := func(t *testing.T, from, amount string, names ...string) map[string]answer {
		out := map[string]answer{}
		for _, name := range names {
			r := s.do("bank-b/gateway", "dave@bank-b", http.MethodPost, "/v1/payments", uuid.NewString(), pay(from, payees[name], amount))
			a := answer{Status: r.Status, ContentType: r.Header.Get("Content-Type"), Body: r.Body}
			if id, ok := r.Body["payment_id"].(string); ok {
				g := s.do("bank-b/gateway", "dave@bank-b", http.MethodGet, "/v1/payments/"+id, "", "")
				a.Stored = map[string]any{"status": g.Body["status"], "failure": g.Body["failure"]}
				a.Body["payment_id"] = "(payment ID)"
			}
			out[name] = a
		}
		return out
	}
	rejected := func(reason string) answer {
		return answer{Status: 422, ContentType: "application/problem+json",
			Body: map[string]any{"type": "https://ztbank.dev/problems/business-rule", "title": "Unprocessable Entity", "status": 422.0,
				"detail": "the payment was rejected", "instance": "/v1/payments", "reason": reason, "payment_id": "(payment ID)"},
			Stored: map[string]any{"status": "rejected", "failure": reason}}
	}

	t.Run("payee that does not exist reads like one in another currency", func(t *testing.T) {
		got := send(t, dave, "1", "unknown payee", "payee in another currency")
		want := map[string]answer{"unknown payee": rejected(ReasonPayeeRefused), "payee in another currency": rejected(ReasonPayeeRefused)}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("answers (-want +got):\n%s", diff)
		}
	})
	t.Run("insufficient funds whatever the payee", func(t *testing.T) {
		got := send(t, dave, "999999999999", "unknown payee", "payee in another currency", "payee in the same currency")
		want := map[string]answer{}
		for name := range payees {
			want[name] = rejected(ReasonInsufficientFunds)
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("answers (-want +got):\n%s", diff)
		}
	})
	t.Run("the payer's own account in another currency is told", func(t *testing.T) {
		r := s.do("bank-b/gateway", "dave@bank-b", http.MethodPost, "/v1/payments", uuid.NewString(), pay(daveUSD.ID.String(), acct("bob@bank-b", "current"), "1"))
		var body map[string]any
		_ = json.Unmarshal([]byte(r.Raw), &body)
		if diff := cmp.Diff([]any{422, ReasonCurrencyMismatch}, []any{r.Status, body["reason"]}); diff != "" {
			t.Errorf("status and reason (-want +got):\n%s\n%s", diff, r.Raw)
		}
	})
}
