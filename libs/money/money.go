// Package money represents amounts as integer minor units with an ISO 4217 currency. There
// are no floats anywhere: JSON amounts must be integer literals, and arithmetic refuses to
// mix currencies or leave the bounded range.
package money

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"github.com/ztbank/ztbank/libs/jsonbody"
)

// MaxAmount bounds every amount (in minor units, either sign): 10^15 is ten trillion euros,
// far above any single payment and far below int64 overflow, so sums of a few million
// amounts cannot overflow either.
const MaxAmount int64 = 1_000_000_000_000_000

var (
	// ErrCurrency is returned for a code that is not a supported ISO 4217 currency.
	ErrCurrency = errors.New("unsupported currency")
	// ErrCurrencyMismatch is returned when an operation mixes currencies.
	ErrCurrencyMismatch = errors.New("currency mismatch")
	// ErrRange is returned when an amount is outside ±MaxAmount.
	ErrRange = errors.New("amount out of range")
	// ErrNotPositive is returned by Positive for zero or negative amounts.
	ErrNotPositive = errors.New("amount must be positive")
	// ErrSyntax is returned for JSON that is not {"amount": <integer>, "currency": "<code>"}.
	ErrSyntax = errors.New("invalid money")
)

// currencies maps the supported ISO 4217 codes to their number of minor-unit digits. It is
// deliberately short: a bank supports the currencies it settles in, not every code.
var currencies = map[string]int{
	"EUR": 2, "USD": 2, "GBP": 2, "CHF": 2, "SEK": 2, "NOK": 2, "DKK": 2, "PLN": 2,
	"CZK": 2, "CAD": 2, "AUD": 2, "JPY": 0, "ISK": 0, "KWD": 3, "BHD": 3,
}

// Currency is a supported ISO 4217 code.
type Currency string

// ParseCurrency validates code.
func ParseCurrency(code string) (Currency, error) {
	if _, ok := currencies[code]; !ok {
		return "", fmt.Errorf("%w: %q", ErrCurrency, truncate(code))
	}
	return Currency(code), nil
}

// Exponent returns the number of minor-unit digits (2 for EUR: 1 EUR = 100 cents).
func (c Currency) Exponent() int { return currencies[string(c)] }

// Money is an amount of minor units of a currency. The zero value is invalid.
type Money struct {
	Amount   int64
	Currency Currency
}

// New validates amount and currency.
func New(amount int64, currency string) (Money, error) {
	c, err := ParseCurrency(currency)
	if err != nil {
		return Money{}, err
	}
	if amount > MaxAmount || amount < -MaxAmount {
		return Money{}, fmt.Errorf("%w: %d", ErrRange, amount)
	}
	return Money{Amount: amount, Currency: c}, nil
}

// Validate reports whether m has a supported currency and an amount in range.
func (m Money) Validate() error {
	_, err := New(m.Amount, string(m.Currency))
	return err
}

// Positive reports an error unless m is valid and above zero, as every payment must be.
func (m Money) Positive() error {
	if err := m.Validate(); err != nil {
		return err
	}
	if m.Amount <= 0 {
		return ErrNotPositive
	}
	return nil
}

// Add returns m+o; both must have the same currency and the result must stay in range.
func (m Money) Add(o Money) (Money, error) {
	if m.Currency != o.Currency {
		return Money{}, fmt.Errorf("%w: %s and %s", ErrCurrencyMismatch, m.Currency, o.Currency)
	}
	return New(m.Amount+o.Amount, string(m.Currency)) // both within ±1e15: no overflow
}

// Neg returns -m.
func (m Money) Neg() Money { return Money{Amount: -m.Amount, Currency: m.Currency} }

// String formats m for people and logs, e.g. "12.34 EUR", using integer arithmetic.
func (m Money) String() string {
	exp := m.Currency.Exponent()
	sign, a := "", m.Amount
	if a < 0 {
		sign, a = "-", -a
	}
	if exp == 0 {
		return fmt.Sprintf("%s%d %s", sign, a, m.Currency)
	}
	div := int64(1)
	for range exp {
		div *= 10
	}
	return fmt.Sprintf("%s%d.%0*d %s", sign, a/div, exp, a%div, m.Currency)
}

type wire struct {
	Amount   json.RawMessage `json:"amount"`
	Currency string          `json:"currency"`
}

// MarshalJSON writes {"amount": <minor units>, "currency": "<code>"}.
func (m Money) MarshalJSON() ([]byte, error) {
	return []byte(`{"amount":` + strconv.FormatInt(m.Amount, 10) + `,"currency":"` + string(m.Currency) + `"}`), nil
}

// UnmarshalJSON accepts exactly {"amount": <integer>, "currency": "<code>"}. A fraction,
// exponent, quoted number, null or unknown field is refused rather than rounded or guessed.
func (m *Money) UnmarshalJSON(b []byte) error {
	// The platform's strict decoder: no member twice, none in another letter case.
	var w wire
	if err := jsonbody.Unmarshal(b, &w); err != nil {
		return fmt.Errorf("%w: %w", ErrSyntax, err)
	}
	if w.Amount == nil || w.Currency == "" {
		return fmt.Errorf("%w: amount and currency are required", ErrSyntax)
	}
	amount, err := parseInteger(w.Amount)
	if err != nil {
		return err
	}
	v, err := New(amount, w.Currency)
	if err != nil {
		return err
	}
	*m = v
	return nil
}

// parseInteger accepts a JSON number with only an optional minus sign and digits.
func parseInteger(raw json.RawMessage) (int64, error) {
	s := string(raw)
	digits := s
	if len(digits) > 0 && digits[0] == '-' {
		digits = digits[1:]
	}
	if digits == "" || len(digits) > 19 {
		return 0, fmt.Errorf("%w: amount must be an integer number of minor units", ErrSyntax)
	}
	for _, r := range digits {
		if r < '0' || r > '9' {
			return 0, fmt.Errorf("%w: amount must be an integer number of minor units", ErrSyntax)
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%w: %d digits", ErrRange, len(digits))
	}
	return n, nil
}

func truncate(s string) string {
	if len(s) > 8 {
		return s[:8] + "…"
	}
	return s
}
