package main

import (
	"fmt"
	"net/http"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"

	"github.com/ztbank/ztbank/devkit/demo"
	"github.com/ztbank/ztbank/devkit/localpg/pgtest"
)

// TestPostingByReference: the payment service, with no user, learns whether a reference was
// posted (its transaction ID, or 404); no other workload may ask, and a call carrying a
// user is refused (the route acts for no user).
func TestPostingByReference(t *testing.T) {
	pgtest.Require(t)
	s := newStack(t)
	from, to := demo.AccountID("bob@bank-b", "current").String(), demo.AccountID("dave@bank-b", "current").String()
	ref := uuid.NewString()
	body := fmt.Sprintf(`{"reference":%q,"description":"","currency":"EUR","entries":[{"account_id":%q,"amount":-1},{"account_id":%q,"amount":1}]}`, ref, from, to)
	posted := s.do("bank-b/payment", "bob@bank-b", http.MethodPost, "/v1/postings", body)
	if posted.Status != http.StatusCreated {
		t.Fatalf("post: %d %s", posted.Status, posted.Raw)
	}
	type got struct {
		Status int
		TxID   any
	}
	for _, tc := range []struct {
		name, workload, user, ref string
		want                      got
	}{
		{"payment, posted reference", "bank-b/payment", "", ref, got{200, posted.Body["transaction_id"]}},
		{"payment, unknown reference", "bank-b/payment", "", uuid.NewString(), got{404, nil}},
		// A user present is checked too, and no role grants ledger:reconcile.
		{"payment with a user token", "bank-b/payment", "bob@bank-b", ref, got{403, nil}},
		{"gateway may not ask", "bank-b/gateway", "", ref, got{403, nil}},
		{"gateway with a user may not ask", "bank-b/gateway", "bob@bank-b", ref, got{403, nil}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := s.do(tc.workload, tc.user, http.MethodGet, "/v1/postings/"+tc.ref, "")
			if diff := cmp.Diff(tc.want, got{r.Status, r.Body["transaction_id"]}); diff != "" {
				t.Errorf("mismatch (-want +got):\n%s\nbody: %s", diff, r.Raw)
			}
		})
	}
}
