package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	"github.com/go-chi/chi/v5"
	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"

	"github.com/ztbank/ztbank/devkit/demo"
	"github.com/ztbank/ztbank/devkit/localpg/pgtest"
	"github.com/ztbank/ztbank/devkit/servertest"
	"github.com/ztbank/ztbank/libs/db"
	"github.com/ztbank/ztbank/libs/money"
	"github.com/ztbank/ztbank/libs/problem"
	"github.com/ztbank/ztbank/libs/server"
	"github.com/ztbank/ztbank/services/ledger/ledgerapi"
	ledgerstore "github.com/ztbank/ztbank/services/ledger/store"
	"github.com/ztbank/ztbank/services/payment/store"
)

var (
	paymentStore *store.Store
	ledgerStore  *ledgerstore.Store
)

func TestMain(m *testing.M) {
	os.Exit(pgtest.MainSeeded(m, func(ctx context.Context, e *pgtest.Env) error {
		pp, err := e.Pool(ctx, "payment_svc", "bank_b")
		if err != nil {
			return err
		}
		lp, err := e.Pool(ctx, "ledger_svc", "bank_b")
		paymentStore, ledgerStore = store.New(pp), ledgerstore.New(lp)
		return err
	}))
}

// ledgerPeer stands in for the ledger service's two routes the payment service calls,
// over the real ledger store in the same database, and records what reached it. It
// requires the forwarded user token and the payment workload's identity, as the ledger does.
// While *contended is above zero, each posting counts it down and is answered as the ledger
// answers one that lost every serialization retry (503, type contention), moving nothing.
func ledgerPeer(t *testing.T, h *servertest.Harness) (srv *httptest.Server, posts, contended *int) {
	posts, contended = new(int), new(int)
	r := chi.NewRouter()
	r.Use(h.PeerGuard)
	r.Get("/v1/accounts/{accountID}", func(w http.ResponseWriter, r *http.Request) {
		a, err := ledgerStore.Account(r.Context(), uuid.MustParse(chi.URLParam(r, "accountID")))
		if errors.Is(err, ledgerstore.ErrNotFound) {
			http.Error(w, "not found", http.StatusNotFound)
			return
		}
		server.WriteJSON(w, 200, ledgerapi.Account{ID: a.ID, OwnerID: a.OwnerID, Kind: a.Kind, Name: a.Name, Balance: a.Balance, CreatedAt: a.CreatedAt})
	})
	r.Post("/v1/postings", func(w http.ResponseWriter, r *http.Request) {
		*posts++
		if *contended > 0 {
			*contended--
			problem.Write(w, r, fmt.Errorf("post: %w", db.ErrRetriesExhausted))
			return
		}
		// The stand-in decodes the shared contract strictly, as the real ledger does.
		var req ledgerapi.PostingRequest
		dec := json.NewDecoder(r.Body)
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		tx := ledgerstore.Transaction{Reference: req.Reference, Description: req.Description, Currency: money.Currency(req.Currency)}
		for _, e := range req.Entries {
			tx.Postings = append(tx.Postings, ledgerstore.Posting{AccountID: e.AccountID, Amount: e.Amount})
		}
		out, err := ledgerStore.Post(r.Context(), tx)
		// The real ledger's refusal reasons (services/ledger handlers.go post).
		for reason, e := range map[string]error{"insufficient_funds": ledgerstore.ErrInsufficientFunds,
			"unknown_account": ledgerstore.ErrNotFound, "currency_mismatch": ledgerstore.ErrCurrencyMismatch} {
			if errors.Is(err, e) {
				w.Header().Set("Content-Type", "application/problem+json")
				w.WriteHeader(422)
				io.WriteString(w, `{"status":422,"reason":"`+reason+`"}`)
				return
			}
		}
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		server.WriteJSON(w, 201, ledgerapi.PostingResult{TransactionID: out.ID, Replayed: out.Replayed})
	})
	srv = httptest.NewServer(r)
	t.Cleanup(srv.Close)
	return srv, posts, contended
}

// stack is the payment service's real router, talking to a stand-in ledger through the
// service's real mesh peer client (which forwards the user's token).
type stack struct {
	*servertest.Harness
	posts, contended *int
}

func newStack(t *testing.T) stack {
	t.Helper()
	h := servertest.New(t, "bank-b/payment")
	ledgerSrv, posts, contended := ledgerPeer(t, h)
	ledger := NewLedgerClient(&server.Peer{Name: "bank-b/ledger", BaseURL: ledgerSrv.URL, Client: h.PeerClient()})
	h.Serve(NewServer(h.Runtime, nil, paymentStore, ledger))
	return stack{h, posts, contended}
}

type response struct {
	Status int
	Header http.Header
	Body   map[string]any
	Raw    string
}

// do sends a request as workload for user (demo username, or "") with an optional
// Idempotency-Key, and decodes the JSON answer.
func (s stack) do(workload, user, method, path, key, body string) response {
	s.T.Helper()
	hdr := http.Header{}
	if user != "" {
		hdr.Set("Authorization", "Bearer "+s.Token(user))
	}
	if key != "" {
		hdr.Set("Idempotency-Key", key)
	}
	r := s.Send(workload, method, path, body, hdr)
	out := response{Status: r.Status, Header: r.Header, Raw: r.Body}
	_ = json.Unmarshal([]byte(r.Body), &out.Body)
	return out
}

func acct(owner, name string) string { return demo.AccountID(owner, name).String() }

func pay(from, to, amount string) string {
	return fmt.Sprintf(`{"from_account":%q,"to_account":%q,"amount":{"amount":%s,"currency":"EUR"},"reference":"rent"}`, from, to, amount)
}

func balance(t *testing.T, owner, name string) int64 {
	t.Helper()
	a, err := ledgerStore.Account(t.Context(), demo.AccountID(owner, name))
	if err != nil {
		t.Fatal(err)
	}
	return a.Balance.Amount
}

func TestCreatePayment(t *testing.T) {
	pgtest.Require(t)
	s := newStack(t)
	bob, dave := acct("bob@bank-b", "current"), acct("dave@bank-b", "current")
	key, rejectKey := uuid.NewString(), uuid.NewString()
	bobBefore, daveBefore := balance(t, "bob@bank-b", "current"), balance(t, "dave@bank-b", "current")
	var firstID, rejectedID string
	for _, tc := range []struct {
		name       string
		workload   string
		user       string
		key        string
		body       string
		wantStatus int
		want       string
		check      func(t *testing.T, r response)
	}{
		{"own account pays", "bank-b/gateway", "bob@bank-b", key, pay(bob, dave, "1234"), 201, `"status":"posted"`,
			func(t *testing.T, r response) { firstID, _ = r.Body["id"].(string) }},
		{"retry returns the same payment", "bank-b/gateway", "bob@bank-b", key, pay(bob, dave, "1234"), 201, `"status":"posted"`,
			func(t *testing.T, r response) {
				if diff := cmp.Diff(firstID, r.Body["id"]); diff != "" || r.Header.Get("Idempotent-Replayed") != "true" {
					t.Errorf("retry payment ID mismatch (-want +got):\n%s replayed=%q", diff, r.Header.Get("Idempotent-Replayed"))
				}
			}},
		{"same key, different body", "bank-b/gateway", "bob@bank-b", key, pay(bob, dave, "1235"), 422, "different request", nil},
		{"no Idempotency-Key", "bank-b/gateway", "bob@bank-b", "", pay(bob, dave, "1"), 400, "Idempotency-Key", nil},
		{"float amount", "bank-b/gateway", "bob@bank-b", uuid.NewString(), pay(bob, dave, "12.34"), 400, "", nil},
		{"string amount", "bank-b/gateway", "bob@bank-b", uuid.NewString(), pay(bob, dave, `"12"`), 400, "", nil},
		{"zero amount", "bank-b/gateway", "bob@bank-b", uuid.NewString(), pay(bob, dave, "0"), 400, "", nil},
		{"same account", "bank-b/gateway", "bob@bank-b", uuid.NewString(), pay(bob, bob, "1"), 400, "", nil},
		{"neighbour's account", "bank-b/gateway", "dave@bank-b", uuid.NewString(), pay(bob, dave, "1"), 403, "decision_id", nil},
		{"unknown source account", "bank-b/gateway", "dave@bank-b", uuid.NewString(), pay(uuid.NewString(), dave, "1"), 403, "decision_id", nil},
		{"staff never moves money", "bank-b/gateway", "erin@bank-b", uuid.NewString(), pay(bob, dave, "1"), 403, "decision_id", nil},
		{"other tenant's token", "bank-b/gateway", "alice@bank-a", uuid.NewString(), pay(bob, dave, "1"), 401, "", nil},
		{"ledger may not call payment", "bank-b/ledger", "bob@bank-b", uuid.NewString(), pay(bob, dave, "1"), 403, "", nil},
		{"insufficient funds is stored", "bank-b/gateway", "dave@bank-b", rejectKey, pay(dave, bob, "999999999"), 422, `"reason":"insufficient_funds"`,
			func(t *testing.T, r response) { rejectedID, _ = r.Body["payment_id"].(string) }},
		{"rejection replays", "bank-b/gateway", "dave@bank-b", rejectKey, pay(dave, bob, "999999999"), 422, `"reason":"insufficient_funds"`,
			func(t *testing.T, r response) {
				if diff := cmp.Diff(rejectedID, r.Body["payment_id"]); diff != "" {
					t.Errorf("replayed rejection payment ID mismatch (-want +got):\n%s", diff)
				}
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := s.do(tc.workload, tc.user, http.MethodPost, "/v1/payments", tc.key, tc.body)
			servertest.Check(t, "POST /v1/payments", got.Status, got.Raw, tc.wantStatus, []string{tc.want}, nil)
			if tc.check != nil {
				tc.check(t, got)
			}
		})
	}
	// Only the one payment moved money, once, although it was sent twice.
	if diff := cmp.Diff([]int64{bobBefore - 1234, daveBefore + 1234},
		[]int64{balance(t, "bob@bank-b", "current"), balance(t, "dave@bank-b", "current")}); diff != "" {
		t.Errorf("balances mismatch (-want +got):\n%s", diff)
	}
	if *s.posts != 2 {
		t.Errorf("ledger saw %d postings, want 2 (the payment and the rejected one; replays are served from the store)", *s.posts)
	}

	t.Run("read", func(t *testing.T) {
		for _, tc := range []struct {
			name       string
			user       string
			id         string
			wantStatus int
		}{
			{"payer reads own payment", "bob@bank-b", firstID, 200},
			{"neighbour cannot", "dave@bank-b", firstID, 403},
			{"staff reads within tenant", "erin@bank-b", firstID, 200},
			{"unknown looks like a neighbour's", "bob@bank-b", uuid.NewString(), 403},
			{"staff gets 404 for unknown", "erin@bank-b", uuid.NewString(), 404},
			{"other tenant", "alice@bank-a", firstID, 401},
		} {
			t.Run(tc.name, func(t *testing.T) {
				got := s.do("bank-b/gateway", tc.user, http.MethodGet, "/v1/payments/"+tc.id, "", "")
				if diff := cmp.Diff(tc.wantStatus, got.Status); diff != "" {
					t.Fatalf("GET payment status mismatch (-want +got):\n%s\nbody: %s", diff, got.Raw)
				}
				if tc.wantStatus != 200 && strings.Contains(got.Raw, "from_account") {
					t.Errorf("refusal leaks payment data: %s", got.Raw)
				}
			})
		}
	})
}

// TestLedgerContentionIsRetried: a ledger 503 (its posting lost every serialization retry on
// a hot account) is not a failed payment. The client is told to retry (503 with
// Retry-After), nothing is stored, and its retry with the same Idempotency-Key resumes the
// same payment, which then moves the money exactly once.
func TestLedgerContentionIsRetried(t *testing.T) {
	pgtest.Require(t)
	s := newStack(t)
	bob, dave := acct("bob@bank-b", "current"), acct("dave@bank-b", "current")
	before := []int64{balance(t, "bob@bank-b", "current"), balance(t, "dave@bank-b", "current")}
	key := uuid.NewString()

	*s.contended = 1
	got := s.do("bank-b/gateway", "bob@bank-b", http.MethodPost, "/v1/payments", key, pay(bob, dave, "25"))
	if got.Status != http.StatusServiceUnavailable || got.Header.Get("Retry-After") == "" {
		t.Fatalf("POST /v1/payments while the ledger is contended: %d Retry-After %q %s, want 503 with Retry-After",
			got.Status, got.Header.Get("Retry-After"), got.Raw)
	}
	got = s.do("bank-b/gateway", "bob@bank-b", http.MethodPost, "/v1/payments", key, pay(bob, dave, "25"))
	servertest.Check(t, "POST /v1/payments (retry)", got.Status, got.Raw, http.StatusCreated, []string{`"status":"posted"`}, nil)
	if got.Header.Get("Idempotent-Replayed") == "true" {
		t.Errorf("the retry replayed a stored answer; the 503 must not have been stored")
	}
	if diff := cmp.Diff([]int64{before[0] - 25, before[1] + 25},
		[]int64{balance(t, "bob@bank-b", "current"), balance(t, "dave@bank-b", "current")}); diff != "" {
		t.Errorf("balances mismatch (-want +got):\n%s", diff)
	}
	if *s.posts != 2 {
		t.Errorf("ledger saw %d postings, want 2 (the contended one and the retry)", *s.posts)
	}
}
