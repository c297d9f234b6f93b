package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/google/uuid"

	"github.com/ztbank/ztbank/libs/authz"
	"github.com/ztbank/ztbank/libs/jsonbody"
	"github.com/ztbank/ztbank/libs/money"
	"github.com/ztbank/ztbank/libs/problem"
	"github.com/ztbank/ztbank/libs/server"
	"github.com/ztbank/ztbank/services/ledger/ledgerapi"
	"github.com/ztbank/ztbank/services/ledger/store"
)

// Ledger is what the handlers need from the ledger store.
type Ledger interface {
	Account(ctx context.Context, id uuid.UUID) (store.Account, error)
	AccountsByOwner(ctx context.Context, owner uuid.UUID, limit int) ([]store.Account, error)
	Entries(ctx context.Context, account uuid.UUID, after int64, limit int) ([]store.Entry, int64, error)
	Post(ctx context.Context, t store.Transaction) (store.Transaction, error)
}

// Page sizes for entries.
const (
	defaultPageSize = 50
	maxPageSize     = 200
	maxAccounts     = 100
	maxPostingBytes = 8 << 10
)

type handlers struct {
	az     *authz.Engine
	ledger Ledger
	tenant string
}

func toJSON(a store.Account) ledgerapi.Account {
	return ledgerapi.Account{ID: a.ID, OwnerID: a.OwnerID, Kind: a.Kind, Name: a.Name, Balance: a.Balance, CreatedAt: a.CreatedAt}
}

func (h *handlers) listAccounts(w http.ResponseWriter, r *http.Request) error {
	owner, err := server.UserUUID(r.Context(), h.tenant)
	if err != nil {
		return err
	}
	accts, err := h.ledger.AccountsByOwner(r.Context(), owner, maxAccounts)
	if err != nil {
		return err
	}
	out := make([]ledgerapi.Account, 0, len(accts))
	for _, a := range accts {
		out = append(out, toJSON(a))
	}
	server.WriteJSON(w, http.StatusOK, map[string]any{"accounts": out})
	return nil
}

// load reads the account in the path and decides perm on it. An unknown account is decided
// as one nobody owns, so a customer gets the same 403 for a neighbour's account as for a
// made-up ID and cannot probe which IDs exist; staff, who may read any account of the
// tenant, get the 404.
func (h *handlers) load(r *http.Request, perm string) (store.Account, error) {
	id, err := server.PathUUID(r, "accountID")
	if err != nil {
		return store.Account{}, err
	}
	a, err := h.ledger.Account(r.Context(), id)
	if errors.Is(err, store.ErrNotFound) {
		return store.Account{}, server.Unknown(r.Context(), h.az, perm,
			authz.Resource{Kind: "ledger_account", ID: id.String(), Tenant: h.tenant}, "no such account")
	}
	if err != nil {
		return store.Account{}, err
	}
	if err := h.az.Check(r.Context(), perm, h.resource(a)); err != nil {
		return store.Account{}, err
	}
	return a, nil
}

func (h *handlers) resource(a store.Account) authz.Resource {
	return authz.Resource{Kind: "ledger_account", ID: a.ID.String(), Owner: server.OwnerID(h.tenant, a.OwnerID), Tenant: h.tenant}
}

func (h *handlers) balance(w http.ResponseWriter, r *http.Request) error {
	a, err := h.load(r, "accounts:read")
	if err != nil {
		return err
	}
	server.WriteJSON(w, http.StatusOK, map[string]any{"account_id": a.ID, "balance": a.Balance})
	return nil
}

func (h *handlers) accountOwner(w http.ResponseWriter, r *http.Request) error {
	id, err := server.PathUUID(r, "accountID")
	if err != nil {
		return err
	}
	// Only the payment service reaches this route (FromSameTenant in routes.go); it makes the
	// ownership decision for the payment with its own policy engine, so the route-level
	// decision is the one recorded here.
	a, err := h.ledger.Account(r.Context(), id)
	if errors.Is(err, store.ErrNotFound) {
		return problem.Errorf(problem.ErrNotFound, "no such account")
	}
	if err != nil {
		return err
	}
	server.WriteJSON(w, http.StatusOK, toJSON(a))
	return nil
}

type entryJSON struct {
	ID            int64       `json:"id"`
	TransactionID uuid.UUID   `json:"transaction_id"`
	Amount        money.Money `json:"amount"`
	CreatedAt     time.Time   `json:"created_at"`
}

// parsePage reads the entries page from the query: limit (1 to maxPageSize, default
// defaultPageSize) and cursor (a previous page's next_cursor, a non-negative entry ID).
func parsePage(q url.Values) (limit int, after int64, err error) {
	limit = defaultPageSize
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > maxPageSize {
			return 0, 0, problem.Errorf(problem.ErrBadRequest, fmt.Sprintf("limit must be 1 to %d", maxPageSize))
		}
		limit = n
	}
	if s := q.Get("cursor"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n < 0 {
			return 0, 0, problem.Errorf(problem.ErrBadRequest, "cursor must be the next_cursor of a previous page")
		}
		after = n
	}
	return limit, after, nil
}

func (h *handlers) entries(w http.ResponseWriter, r *http.Request) error {
	limit, after, err := parsePage(r.URL.Query())
	if err != nil {
		return err
	}
	a, err := h.load(r, "ledger:read")
	if err != nil {
		return err
	}
	es, next, err := h.ledger.Entries(r.Context(), a.ID, after, limit)
	if err != nil {
		return err
	}
	out := make([]entryJSON, 0, len(es))
	for _, e := range es {
		out = append(out, entryJSON{ID: e.ID, TransactionID: e.TransactionID, Amount: e.Amount, CreatedAt: e.CreatedAt})
	}
	body := map[string]any{"account_id": a.ID, "entries": out}
	if next != 0 {
		body["next_cursor"] = strconv.FormatInt(next, 10)
	}
	server.WriteJSON(w, http.StatusOK, body)
	return nil
}

func decodePosting(r io.Reader) (store.Transaction, error) {
	var req ledgerapi.PostingRequest
	if err := jsonbody.Read(r, maxPostingBytes, &req); err != nil {
		return store.Transaction{}, err
	}
	t := store.Transaction{Reference: req.Reference, Description: req.Description, Currency: money.Currency(req.Currency)}
	for _, e := range req.Entries {
		// money.New checks the currency is supported and the amount within range, as the
		// wire format's integer type cannot.
		if _, err := money.New(e.Amount, req.Currency); err != nil {
			return store.Transaction{}, problem.Errorf(problem.ErrBadRequest, "entry amounts must be integer minor units of a supported currency")
		}
		t.Postings = append(t.Postings, store.Posting{AccountID: e.AccountID, Amount: e.Amount})
	}
	if err := t.Validate(); err != nil {
		return store.Transaction{}, problem.Errorf(problem.ErrUnprocessable, err.Error())
	}
	return t, nil
}

func (h *handlers) post(w http.ResponseWriter, r *http.Request) error {
	t, err := decodePosting(r.Body)
	if err != nil {
		return err
	}
	// Defence in depth behind the payment service: the user the payment speaks for must be
	// allowed to post on every account it debits (customers: only their own). Credits go to
	// any account of the tenant, as a payment to someone else does.
	for _, p := range t.Postings {
		if p.Amount >= 0 {
			continue
		}
		a, err := h.ledger.Account(r.Context(), p.AccountID)
		if errors.Is(err, store.ErrNotFound) {
			return rejected("unknown_account", "a debited account does not exist")
		}
		if err != nil {
			return err
		}
		if err := h.az.Check(r.Context(), "ledger:post", h.resource(a)); err != nil {
			return err
		}
	}
	out, err := h.ledger.Post(r.Context(), t)
	switch {
	case errors.Is(err, store.ErrInsufficientFunds):
		return rejected("insufficient_funds", "insufficient funds")
	case errors.Is(err, store.ErrNotFound):
		return rejected("unknown_account", "an account does not exist")
	case errors.Is(err, store.ErrCurrencyMismatch):
		return rejected("currency_mismatch", "an account is in another currency")
	case errors.Is(err, store.ErrReferenceConflict):
		return problem.Errorf(problem.ErrConflict, "reference already posted with different entries")
	case errors.Is(err, store.ErrInvalid):
		return problem.Errorf(problem.ErrUnprocessable, err.Error())
	case err != nil:
		return err
	}
	status := http.StatusCreated
	if out.Replayed {
		status = http.StatusOK
	}
	server.WriteJSON(w, status, ledgerapi.PostingResult{TransactionID: out.ID, Replayed: out.Replayed})
	return nil
}

// rejected is a business refusal: final, so the payment service stores it (422 with a
// machine-readable reason).
func rejected(reason, msg string) error {
	return problem.With(problem.ErrUnprocessable, msg, map[string]any{"reason": reason}) // read as ledgerapi.Refusal
}
