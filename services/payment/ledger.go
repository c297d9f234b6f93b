package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/google/uuid"

	"github.com/ztbank/ztbank/libs/money"
	"github.com/ztbank/ztbank/libs/problem"
	"github.com/ztbank/ztbank/libs/server"
	"github.com/ztbank/ztbank/services/ledger/ledgerapi"
	"github.com/ztbank/ztbank/services/payment/store"
)

// LedgerClient calls the ledger service over the peer's mTLS client, which forwards the
// user's internal JWT: the ledger re-verifies it and checks the user may debit the account.
type LedgerClient struct{ peer *server.Peer }

// NewLedgerClient returns a client for the ledger peer.
func NewLedgerClient(p *server.Peer) *LedgerClient { return &LedgerClient{peer: p} }

// errUnknownAccount is returned by Account for an account the ledger does not hold.
var errUnknownAccount = errors.New("unknown ledger account")

// The reasons a customer reads in a rejected payment. The payer sees its own account (the
// handler checked it exists, is the payer's and is in the payment's currency) but not the
// account it pays, so the ledger's unknown_account and currency_mismatch, which by then can
// only be about to_account, are told to the customer as one reason: the API promises that
// account IDs cannot be probed, and a payment refused for an unknown payee must read exactly
// like one refused for a payee in another currency. The ledger checks the debited account's
// funds before it looks at the credited one, so insufficient_funds says nothing about the
// payee either.
const (
	ReasonInsufficientFunds = "insufficient_funds"
	ReasonCurrencyMismatch  = "currency_mismatch" // from_account is not in the payment's currency
	ReasonPayeeRefused      = "payee_refused"     // to_account does not exist or holds another currency
)

// customerReason is the reason stored and shown for the ledger's refusal reason.
func customerReason(ledgerReason string) string {
	if ledgerReason == ReasonInsufficientFunds {
		return ReasonInsufficientFunds
	}
	return ReasonPayeeRefused
}

// Account looks up who owns account id.
func (c *LedgerClient) Account(ctx context.Context, id uuid.UUID) (ledgerapi.Account, error) {
	var a ledgerapi.Account
	status, body, err := c.do(ctx, http.MethodGet, ledgerapi.AccountPath(id), nil)
	switch {
	case err != nil:
		return a, err
	case status == http.StatusNotFound:
		return a, errUnknownAccount
	case status != http.StatusOK:
		return a, statusError("ledger account "+id.String(), status)
	}
	if err := json.Unmarshal(body, &a); err != nil {
		return a, fmt.Errorf("ledger account %s: %w", id, err)
	}
	return a, nil
}

// Transfer posts the balanced pair of entries for a payment. The reference is the payment
// ID, on which the ledger is idempotent, so a retried or resumed payment never posts twice.
// A 422 with a reason is the ledger's final refusal and is reported as store.RejectedError
// so the payment store records and replays it; anything else is transient.
func (c *LedgerClient) Transfer(ctx context.Context, reference string, from, to uuid.UUID, amount money.Money, description string) (uuid.UUID, error) {
	body, err := json.Marshal(ledgerapi.PostingRequest{
		Reference:   reference,
		Description: description,
		Currency:    string(amount.Currency),
		Entries: []ledgerapi.PostingEntry{
			{AccountID: from, Amount: -amount.Amount},
			{AccountID: to, Amount: amount.Amount},
		},
	})
	if err != nil {
		return uuid.Nil, err
	}
	status, resp, err := c.do(ctx, http.MethodPost, ledgerapi.PostingsPath, body)
	if err != nil {
		return uuid.Nil, err
	}
	switch status {
	case http.StatusCreated, http.StatusOK:
		var out ledgerapi.PostingResult
		if err := json.Unmarshal(resp, &out); err != nil || out.TransactionID == uuid.Nil {
			return uuid.Nil, fmt.Errorf("ledger posting response: %w", err)
		}
		return out.TransactionID, nil
	case http.StatusUnprocessableEntity:
		var p ledgerapi.Refusal
		if json.Unmarshal(resp, &p) == nil && p.Reason != "" {
			return uuid.Nil, &store.RejectedError{Reason: customerReason(p.Reason)}
		}
	case http.StatusForbidden:
		return uuid.Nil, problem.Errorf(problem.ErrForbidden, "the ledger refused the posting")
	}
	return uuid.Nil, statusError("ledger posting", status)
}

// statusError reports an unexpected answer from the ledger. A 503 (its database is down or
// restarting) stays a 503 here, with Retry-After, so the client retries instead of seeing a
// 500 for a passing outage.
func statusError(what string, status int) error {
	if status == http.StatusServiceUnavailable {
		return fmt.Errorf("%s: status %d: %w", what, status, problem.ErrUnavailable)
	}
	return fmt.Errorf("%s: status %d", what, status)
}

// PostingByReference asks the ledger whether it holds a posting with reference, over the
// same mTLS client but without a user token: recovery acts for no user, and the ledger's
// route is workload-only and admits this tenant's payment service alone.
func (c *LedgerClient) PostingByReference(ctx context.Context, reference string) (uuid.UUID, bool, error) {
	status, resp, err := c.do(ctx, http.MethodGet, ledgerapi.PostingByReferencePath(reference), nil)
	if err != nil {
		return uuid.Nil, false, err
	}
	switch status {
	case http.StatusOK:
		var out ledgerapi.PostingResult
		if err := json.Unmarshal(resp, &out); err != nil || out.TransactionID == uuid.Nil {
			return uuid.Nil, false, fmt.Errorf("ledger posting lookup %s: bad answer (%v)", reference, err)
		}
		return out.TransactionID, true, nil
	case http.StatusNotFound:
		return uuid.Nil, false, nil
	}
	return uuid.Nil, false, fmt.Errorf("ledger posting lookup %s: status %d", reference, status)
}

// do calls the ledger and reads its answer; no answer at all is a 503 (server.Peer.Call).
func (c *LedgerClient) do(ctx context.Context, method, path string, body []byte) (int, []byte, error) {
	resp, err := c.peer.Call(ctx, method, path, body)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return 0, nil, fmt.Errorf("ledger %s %s: %w", method, path, err)
	}
	return resp.StatusCode, b, nil
}
