// Package ledgerapi is the ledger's internal API contract, the one definition both sides of
// the payment → ledger call use: the payment service encodes these types and the ledger
// decodes the same ones, so a field renamed on one side is a compile error on the other, not
// a posting the ledger refuses at run time.
package ledgerapi

import (
	"net/url"
	"time"

	"github.com/google/uuid"

	"github.com/ztbank/ztbank/libs/money"
)

// PostingsPath is the route a posting is sent to.
const PostingsPath = "/v1/postings"

// PostingByReferencePath is the workload-only route that tells whether a posting with
// reference exists (the payment service's recovery); the answer is a PostingResult or 404.
func PostingByReferencePath(reference string) string {
	return PostingsPath + "/" + url.PathEscape(reference)
}

// MaxReferenceBytes is the longest reference the ledger stores (its CHECK).
const MaxReferenceBytes = 200

// AccountPath is the route of one account's owner lookup.
func AccountPath(id uuid.UUID) string { return "/v1/accounts/" + id.String() }

// PostingRequest is the body of POST /v1/postings: a balanced transaction in one currency.
// The ledger is idempotent on Reference.
type PostingRequest struct {
	Reference   string         `json:"reference"`
	Description string         `json:"description"`
	Currency    string         `json:"currency"`
	Entries     []PostingEntry `json:"entries"`
}

// PostingEntry is one leg of a posting. Amount is signed minor units of the request's
// currency; as an int64 it decodes only from a JSON integer literal, so a fraction, an
// exponent or a quoted number is refused, never rounded.
type PostingEntry struct {
	AccountID uuid.UUID `json:"account_id"`
	Amount    int64     `json:"amount"`
}

// PostingResult is the ledger's answer to an accepted posting (201, or 200 when Reference was
// already posted with the same entries).
type PostingResult struct {
	TransactionID uuid.UUID `json:"transaction_id"`
	Replayed      bool      `json:"replayed"`
}

// Refusal is the machine-readable part of the ledger's 422 problem for a posting it refuses
// for good (insufficient funds, unknown account, currency mismatch): the payment service
// records Reason and replays it.
type Refusal struct {
	Reason string `json:"reason"`
}

// Account is an account as the ledger shows it. OwnerID is zero for system accounts.
type Account struct {
	ID        uuid.UUID   `json:"id"`
	OwnerID   uuid.UUID   `json:"owner_id,omitzero"`
	Kind      string      `json:"kind"`
	Name      string      `json:"name"`
	Balance   money.Money `json:"balance"`
	CreatedAt time.Time   `json:"created_at"`
}
