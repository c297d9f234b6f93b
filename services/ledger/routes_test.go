package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ztbank/ztbank/devkit/demo"
	"github.com/ztbank/ztbank/devkit/localpg/pgtest"
	"github.com/ztbank/ztbank/devkit/servertest"
	"github.com/ztbank/ztbank/services/ledger/store"
)

var (
	ledgerPool  *pgxpool.Pool
	ledgerStore *store.Store
)

func TestMain(m *testing.M) {
	os.Exit(pgtest.MainSeeded(m, func(ctx context.Context, e *pgtest.Env) error {
		var err error
		ledgerPool, err = e.Pool(ctx, "ledger_svc", "bank_b")
		ledgerStore = store.New(ledgerPool)
		return err
	}))
}

// stack is the ledger service's real router with the real policy engine and token verifier.
type stack struct{ *servertest.Harness }

func newStack(t *testing.T) stack {
	t.Helper()
	h := servertest.New(t, "bank-b/ledger")
	h.Serve(NewServer(h.Runtime, nil, ledgerStore))
	return stack{h}
}

type response struct {
	Status int
	Body   map[string]any
	Raw    string
}

// do sends a request as workload (topology name) for user (demo username, or "") and
// decodes the JSON answer.
func (s stack) do(workload, user, method, path, body string) response {
	s.T.Helper()
	status, raw := s.Do(workload, user, method, path, body)
	out := response{Status: status, Raw: raw}
	_ = json.Unmarshal([]byte(raw), &out.Body)
	return out
}

func acct(owner, name string) string { return demo.AccountID(owner, name).String() }

func TestReadRoutes(t *testing.T) {
	pgtest.Require(t)
	s := newStack(t)
	bobCurrent, bobSavings, daveCurrent := acct("bob@bank-b", "current"), acct("bob@bank-b", "savings"), acct("dave@bank-b", "current")
	unknown := uuid.NewString()
	// Other tests of this package post to these accounts and may run first: the answers are
	// checked against the store's balances at this point, not the seeded ones.
	bal := balances(t, "bob@bank-b", "dave@bank-b")
	bobAmount, daveAmount := fmt.Sprintf(`"amount":%d`, bal[0]), fmt.Sprintf(`"amount":%d`, bal[1])
	for _, tc := range []struct {
		name       string
		workload   string
		user       string
		path       string
		wantStatus int
		want       []string // substrings the body must hold
		forbidden  []string // substrings it must not (another user's data)
	}{
		{"own accounts", "bank-b/gateway", "bob@bank-b", "/v1/accounts", 200, []string{bobCurrent, bobSavings}, []string{daveCurrent}},
		{"own balance", "bank-b/gateway", "bob@bank-b", "/v1/accounts/" + bobCurrent + "/balance", 200, []string{bobAmount}, nil},
		{"neighbour's balance", "bank-b/gateway", "bob@bank-b", "/v1/accounts/" + daveCurrent + "/balance", 403, []string{"decision_id"}, []string{daveAmount, `"balance"`, "owner_id"}},
		{"unknown account looks like a neighbour's", "bank-b/gateway", "bob@bank-b", "/v1/accounts/" + unknown + "/balance", 403, nil, nil},
		{"neighbour's entries", "bank-b/gateway", "dave@bank-b", "/v1/accounts/" + bobCurrent + "/entries", 403, nil, []string{"transaction_id"}},
		{"staff reads within tenant", "bank-b/gateway", "erin@bank-b", "/v1/accounts/" + daveCurrent + "/balance", 200, []string{daveAmount}, nil},
		{"staff gets 404 for unknown", "bank-b/gateway", "erin@bank-b", "/v1/accounts/" + unknown + "/balance", 404, nil, nil},
		{"other tenant's token", "bank-b/gateway", "alice@bank-a", "/v1/accounts", 401, nil, []string{bobCurrent}},
		{"no token", "bank-b/gateway", "", "/v1/accounts", 401, nil, []string{bobCurrent}},
		{"bad account ID", "bank-b/gateway", "bob@bank-b", "/v1/accounts/not-a-uuid/balance", 400, nil, nil},
		{"bad page size", "bank-b/gateway", "bob@bank-b", "/v1/accounts/" + bobCurrent + "/entries?limit=0", 400, nil, nil},
		{"owner lookup is for payment only", "bank-b/gateway", "bob@bank-b", "/v1/accounts/" + bobCurrent, 403, nil, []string{"owner_id"}},
		{"payment looks up an owner", "bank-b/payment", "bob@bank-b", "/v1/accounts/" + daveCurrent, 200, []string{demo.UserID("dave@bank-b").String()}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := s.do(tc.workload, tc.user, http.MethodGet, tc.path, "")
			servertest.Check(t, "GET "+tc.path, got.Status, got.Raw, tc.wantStatus, tc.want, tc.forbidden)
		})
	}
}

func TestEntriesPagination(t *testing.T) {
	pgtest.Require(t)
	s := newStack(t)
	// bob's savings: the opening posting plus three payments to dave.
	from, to := acct("bob@bank-b", "savings"), acct("dave@bank-b", "current")
	for i := range 3 {
		body := fmt.Sprintf(`{"reference":"page-%d-%s","description":"","currency":"EUR","entries":[{"account_id":%q,"amount":-100},{"account_id":%q,"amount":100}]}`, i, uuid.NewString(), from, to)
		if got := s.do("bank-b/payment", "bob@bank-b", http.MethodPost, "/v1/postings", body); got.Status != 201 {
			t.Fatalf("posting %d: %d %s", i, got.Status, got.Raw)
		}
	}
	var ids []float64
	cursor := ""
	for page := 0; page < 10; page++ {
		got := s.do("bank-b/gateway", "bob@bank-b", http.MethodGet, "/v1/accounts/"+from+"/entries?limit=2"+cursor, "")
		if got.Status != 200 {
			t.Fatalf("page %d: %d %s", page, got.Status, got.Raw)
		}
		for _, e := range got.Body["entries"].([]any) {
			ids = append(ids, e.(map[string]any)["id"].(float64))
		}
		next, ok := got.Body["next_cursor"].(string)
		if !ok {
			break
		}
		cursor = "&cursor=" + next
	}
	if len(ids) < 4 {
		t.Fatalf("paged through %d entries, want at least 4 (opening + 3 payments)", len(ids))
	}
	for i := 1; i < len(ids); i++ {
		if ids[i] <= ids[i-1] {
			t.Fatalf("entry IDs not strictly increasing across pages: %v", ids)
		}
	}
}

func TestPostings(t *testing.T) {
	pgtest.Require(t)
	s := newStack(t)
	daveCurrent, bobCurrent := acct("dave@bank-b", "current"), acct("bob@bank-b", "current")
	posting := func(ref, debit, credit, amount string) string {
		return fmt.Sprintf(`{"reference":%q,"description":"test","currency":"EUR","entries":[{"account_id":%q,"amount":-%s},{"account_id":%q,"amount":%s}]}`,
			ref, debit, amount, credit, amount)
	}
	ref := "pay-" + uuid.NewString()
	before := balances(t, "dave@bank-b", "bob@bank-b")
	for _, tc := range []struct {
		name       string
		workload   string
		user       string
		body       string
		wantStatus int
		want       string
	}{
		{"payment posts for the account owner", "bank-b/payment", "dave@bank-b", posting(ref, daveCurrent, bobCurrent, "100"), 201, `"replayed":false`},
		{"same reference replays", "bank-b/payment", "dave@bank-b", posting(ref, daveCurrent, bobCurrent, "100"), 200, `"replayed":true`},
		{"same reference, other entries", "bank-b/payment", "dave@bank-b", posting(ref, daveCurrent, bobCurrent, "200"), 409, ""},
		{"only payment may post", "bank-b/gateway", "dave@bank-b", posting(uuid.NewString(), daveCurrent, bobCurrent, "100"), 403, "decision_id"},
		{"debiting a neighbour's account", "bank-b/payment", "dave@bank-b", posting(uuid.NewString(), bobCurrent, daveCurrent, "100"), 403, "decision_id"},
		{"staff never moves money", "bank-b/payment", "erin@bank-b", posting(uuid.NewString(), daveCurrent, bobCurrent, "100"), 403, "decision_id"},
		{"insufficient funds", "bank-b/payment", "dave@bank-b", posting(uuid.NewString(), daveCurrent, bobCurrent, "99999999"), 422, `"reason":"insufficient_funds"`},
		{"float amount", "bank-b/payment", "dave@bank-b", posting(uuid.NewString(), daveCurrent, bobCurrent, "1.5"), 400, ""},
		{"unbalanced", "bank-b/payment", "dave@bank-b", fmt.Sprintf(`{"reference":"x","description":"","currency":"EUR","entries":[{"account_id":%q,"amount":-5},{"account_id":%q,"amount":4}]}`, daveCurrent, bobCurrent), 422, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := s.do(tc.workload, tc.user, http.MethodPost, "/v1/postings", tc.body)
			servertest.Check(t, "POST /v1/postings", got.Status, got.Raw, tc.wantStatus, []string{tc.want}, nil)
		})
	}
	// The refused postings moved nothing: dave paid bob exactly once.
	if diff := cmp.Diff([]int64{before[0] - 100, before[1] + 100}, balances(t, "dave@bank-b", "bob@bank-b")); diff != "" {
		t.Errorf("balances after postings mismatch (-want +got):\n%s", diff)
	}
}

// balances reads the current accounts of users straight from the store.
func balances(t *testing.T, users ...string) []int64 {
	t.Helper()
	var out []int64
	for _, u := range users {
		a, err := ledgerStore.Account(t.Context(), demo.AccountID(u, "current"))
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, a.Balance.Amount)
	}
	return out
}
