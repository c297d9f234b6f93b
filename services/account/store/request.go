package store

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"

	"github.com/ztbank/ztbank/libs/money"
)

// MaxRequestBytes bounds an open-account request body.
const MaxRequestBytes = 1 << 10

// ErrInvalidRequest is wrapped by every decoding and validation error.
var ErrInvalidRequest = errors.New("invalid account request")

// accountName matches the database's CHECK on accounts.name.
var accountName = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,31}$`)

// OpenRequest asks to open an account.
type OpenRequest struct {
	Name     string `json:"name"`
	Currency string `json:"currency"`
}

// DecodeOpenRequest reads one strict JSON OpenRequest: bounded size, no unknown fields, no
// trailing data, then Validate.
func DecodeOpenRequest(r io.Reader) (OpenRequest, error) {
	b, err := io.ReadAll(io.LimitReader(r, MaxRequestBytes+1))
	if err != nil {
		return OpenRequest{}, fmt.Errorf("%w: %w", ErrInvalidRequest, err)
	}
	if len(b) > MaxRequestBytes {
		return OpenRequest{}, fmt.Errorf("%w: body larger than %d bytes", ErrInvalidRequest, MaxRequestBytes)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var req OpenRequest
	if err := dec.Decode(&req); err != nil {
		return OpenRequest{}, fmt.Errorf("%w: %w", ErrInvalidRequest, err)
	}
	if dec.More() {
		return OpenRequest{}, fmt.Errorf("%w: trailing data after the JSON object", ErrInvalidRequest)
	}
	return req, req.Validate()
}

// Validate checks the name (lower-case letters, digits and dashes, at most 32) and currency.
func (r OpenRequest) Validate() error {
	if !accountName.MatchString(r.Name) {
		return fmt.Errorf("%w: name must be 1 to 32 of a-z, 0-9 and -, starting with a letter or digit", ErrInvalidRequest)
	}
	if _, err := money.ParseCurrency(r.Currency); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidRequest, err)
	}
	return nil
}
