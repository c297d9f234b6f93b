package store

import (
	"errors"
	"fmt"
	"io"
	"regexp"

	"github.com/ztbank/ztbank/libs/jsonbody"
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

// DecodeOpenRequest reads one strict JSON OpenRequest (jsonbody: bounded size, no unknown,
// duplicate or case-folded members, no trailing data), then Validate.
func DecodeOpenRequest(r io.Reader) (OpenRequest, error) {
	var req OpenRequest
	if err := jsonbody.Read(r, MaxRequestBytes, &req); err != nil {
		return OpenRequest{}, fmt.Errorf("%w: %w", ErrInvalidRequest, err)
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
