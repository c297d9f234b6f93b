package money

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestUnmarshalJSON(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    Money
		wantErr error
	}{
		{`{"amount": 1234, "currency": "EUR"}`, Money{1234, "EUR"}, nil},
		{`{"currency":"JPY","amount":-5}`, Money{-5, "JPY"}, nil},
		{`{"amount": 1000000000000000, "currency": "EUR"}`, Money{MaxAmount, "EUR"}, nil},
		{`{"amount": 1000000000000001, "currency": "EUR"}`, Money{}, ErrRange},
		{`{"amount": 99999999999999999999, "currency": "EUR"}`, Money{}, ErrSyntax},
		{`{"amount": 12.34, "currency": "EUR"}`, Money{}, ErrSyntax},
		{`{"amount": 12.0, "currency": "EUR"}`, Money{}, ErrSyntax},
		{`{"amount": 1e3, "currency": "EUR"}`, Money{}, ErrSyntax},
		{`{"amount": "1234", "currency": "EUR"}`, Money{}, ErrSyntax},
		{`{"amount": null, "currency": "EUR"}`, Money{}, ErrSyntax},
		{`{"currency": "EUR"}`, Money{}, ErrSyntax},
		{`{"amount": 1}`, Money{}, ErrSyntax},
		{`{"amount": 1, "currency": "eur"}`, Money{}, ErrCurrency},
		{`{"amount": 1, "currency": "XXX"}`, Money{}, ErrCurrency},
		{`{"amount": 1, "currency": "EUR", "rate": 1}`, Money{}, ErrSyntax},
		{`[1, "EUR"]`, Money{}, ErrSyntax},
	} {
		var got Money
		err := json.Unmarshal([]byte(tc.in), &got)
		if !errors.Is(err, tc.wantErr) || (tc.wantErr == nil && err != nil) {
			t.Errorf("Unmarshal(%s) error = %v, want %v", tc.in, err, tc.wantErr)
			continue
		}
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("Unmarshal(%s) mismatch (-want +got):\n%s", tc.in, diff)
		}
	}
}

func TestRoundTripAndString(t *testing.T) {
	for _, tc := range []struct {
		m    Money
		json string
		str  string
	}{
		{Money{1234, "EUR"}, `{"amount":1234,"currency":"EUR"}`, "12.34 EUR"},
		{Money{-5, "EUR"}, `{"amount":-5,"currency":"EUR"}`, "-0.05 EUR"},
		{Money{700, "JPY"}, `{"amount":700,"currency":"JPY"}`, "700 JPY"},
		{Money{1, "KWD"}, `{"amount":1,"currency":"KWD"}`, "0.001 KWD"},
	} {
		b, err := json.Marshal(tc.m)
		if err != nil || string(b) != tc.json {
			t.Errorf("Marshal(%v) = %s, %v; want %s", tc.m, b, err, tc.json)
		}
		var back Money
		if err := json.Unmarshal(b, &back); err != nil || back != tc.m {
			t.Errorf("round trip of %v = %v, %v", tc.m, back, err)
		}
		if got := tc.m.String(); got != tc.str {
			t.Errorf("String() = %q, want %q", got, tc.str)
		}
	}
}

func TestArithmeticAndValidation(t *testing.T) {
	eur := func(a int64) Money { return Money{a, "EUR"} }
	if got, err := eur(5).Add(eur(7)); err != nil || got != eur(12) {
		t.Errorf("5+7 = %v, %v", got, err)
	}
	if _, err := eur(5).Add(Money{5, "USD"}); !errors.Is(err, ErrCurrencyMismatch) {
		t.Errorf("EUR+USD error = %v, want ErrCurrencyMismatch", err)
	}
	if _, err := eur(MaxAmount).Add(eur(1)); !errors.Is(err, ErrRange) {
		t.Errorf("overflowing add error = %v, want ErrRange", err)
	}
	for _, tc := range []struct {
		m    Money
		want error
	}{
		{eur(1), nil},
		{eur(0), ErrNotPositive},
		{eur(-1), ErrNotPositive},
		{Money{1, ""}, ErrCurrency},
		{eur(MaxAmount + 1), ErrRange},
	} {
		if err := tc.m.Positive(); !errors.Is(err, tc.want) || (tc.want == nil && err != nil) {
			t.Errorf("Positive(%v) = %v, want %v", tc.m, err, tc.want)
		}
	}
}

func FuzzUnmarshalJSON(f *testing.F) {
	for _, s := range []string{`{"amount":1,"currency":"EUR"}`, `{"amount":1.5,"currency":"EUR"}`, `{"amount":"1","currency":"EUR"}`, `{}`, `null`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var m Money
		if err := json.Unmarshal(b, &m); err != nil {
			return
		}
		if err := m.Validate(); err != nil {
			t.Fatalf("decoded invalid money %v from %q: %v", m, b, err)
		}
		out, _ := json.Marshal(m)
		var back Money
		if err := json.Unmarshal(out, &back); err != nil || back != m {
			t.Fatalf("round trip of %v failed: %v, %v", m, back, err)
		}
	})
}
