package store

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/google/uuid"

	"github.com/ztbank/ztbank/libs/jsonbody"
	"github.com/ztbank/ztbank/libs/money"
	"github.com/ztbank/ztbank/libs/textfield"
)

// Request bounds.
const (
	MaxRequestBytes      = 4 << 10
	MaxReferenceLen      = 140 // characters, as the API's maxLength counts them
	MaxIdempotencyKeyLen = 255
)

// ErrInvalidRequest is wrapped by every decoding and validation error (a 400 or 422).
var ErrInvalidRequest = errors.New("invalid payment request")

// Request asks to move Amount from one account to another.
type Request struct {
	From      uuid.UUID   `json:"from_account"`
	To        uuid.UUID   `json:"to_account"`
	Amount    money.Money `json:"amount"`
	Reference string      `json:"reference,omitempty"`
}

// DecodeRequest reads one JSON payment request of at most MaxRequestBytes with the
// platform's strict decoder (jsonbody): unknown, duplicate or case-folded members, trailing data, float or string amounts and missing fields are refused, then Validate runs.
func DecodeRequest(r io.Reader) (Request, error) {
	var req struct {
		From      *uuid.UUID   `json:"from_account"`
		To        *uuid.UUID   `json:"to_account"`
		Amount    *money.Money `json:"amount"`
		Reference string       `json:"reference"`
	}
	if err := jsonbody.Read(r, MaxRequestBytes, &req); err != nil {
		return Request{}, fmt.Errorf("%w: %w", ErrInvalidRequest, err)
	}
	if req.From == nil || req.To == nil || req.Amount == nil {
		return Request{}, fmt.Errorf("%w: from_account, to_account and amount are required", ErrInvalidRequest)
	}
	out := Request{From: *req.From, To: *req.To, Amount: *req.Amount, Reference: req.Reference}
	return out, out.Validate()
}

// Validate checks the rules every payment must meet: a positive amount in a supported
// currency, two distinct accounts and a reference that passes textfield.Check (at most
// MaxReferenceLen characters, no control or bidirectional formatting character).
func (r Request) Validate() error {
	if err := r.Amount.Positive(); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidRequest, err)
	}
	if r.From == uuid.Nil || r.To == uuid.Nil {
		return fmt.Errorf("%w: account IDs are required", ErrInvalidRequest)
	}
	if r.From == r.To {
		return fmt.Errorf("%w: from_account and to_account must differ", ErrInvalidRequest)
	}
	if err := textfield.Check(r.Reference, MaxReferenceLen); err != nil {
		return fmt.Errorf("%w: reference: %w", ErrInvalidRequest, err)
	}
	return nil
}

// Hash identifies the request's meaning, not its spelling: field order or whitespace in the
// JSON do not change it, any field's value does. Each field is length-prefixed so no two
// requests share an encoding.
func (r Request) Hash() [32]byte {
	h := sha256.New()
	h.Write([]byte("ztbank.payment.v1"))
	write := func(b []byte) {
		var n [8]byte
		binary.BigEndian.PutUint64(n[:], uint64(len(b)))
		h.Write(n[:])
		h.Write(b)
	}
	write(r.From[:])
	write(r.To[:])
	write(binary.BigEndian.AppendUint64(nil, uint64(r.Amount.Amount)))
	write([]byte(r.Amount.Currency))
	write([]byte(r.Reference))
	var out [32]byte
	h.Sum(out[:0])
	return out
}

// ValidKey reports whether k is an acceptable Idempotency-Key: 1 to 255 visible ASCII
// characters (RFC draft-ietf-httpapi-idempotency-key-header leaves the format to us).
func ValidKey(k string) error {
	if len(k) == 0 || len(k) > MaxIdempotencyKeyLen {
		return fmt.Errorf("%w: Idempotency-Key must be 1 to %d characters", ErrInvalidRequest, MaxIdempotencyKeyLen)
	}
	for i := 0; i < len(k); i++ {
		if k[i] < 0x21 || k[i] > 0x7e {
			return fmt.Errorf("%w: Idempotency-Key must be visible ASCII", ErrInvalidRequest)
		}
	}
	return nil
}
