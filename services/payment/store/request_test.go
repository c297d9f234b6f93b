package store

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"

	"github.com/ztbank/ztbank/libs/money"
)

const (
	acctA = "0b6e3f0e-8c2b-4bd4-9a34-3d2c6f3e2a11"
	acctB = "5f1c7a52-2f0e-4d38-8a4b-6a1f4c3b9e22"
)

func TestDecodeRequest(t *testing.T) {
	valid := `{"from_account":"` + acctA + `","to_account":"` + acctB + `","amount":{"amount":1250,"currency":"EUR"},"reference":"rent"}`
	for _, tc := range []struct {
		name    string
		body    string
		want    Request
		wantErr bool
	}{
		{"valid", valid, Request{uuid.MustParse(acctA), uuid.MustParse(acctB), money.Money{Amount: 1250, Currency: "EUR"}, "rent"}, false},
		{"no reference", `{"from_account":"` + acctA + `","to_account":"` + acctB + `","amount":{"amount":1,"currency":"JPY"}}`,
			Request{uuid.MustParse(acctA), uuid.MustParse(acctB), money.Money{Amount: 1, Currency: "JPY"}, ""}, false},
		{"unknown field", strings.Replace(valid, `"reference"`, `"memo"`, 1), Request{}, true},
		{"float amount", strings.Replace(valid, "1250", "12.50", 1), Request{}, true},
		{"string amount", strings.Replace(valid, "1250", `"1250"`, 1), Request{}, true},
		{"zero amount", strings.Replace(valid, "1250", "0", 1), Request{}, true},
		{"negative amount", strings.Replace(valid, "1250", "-1250", 1), Request{}, true},
		{"same account", strings.Replace(valid, acctB, acctA, 1), Request{}, true},
		{"missing to", `{"from_account":"` + acctA + `","amount":{"amount":1,"currency":"EUR"}}`, Request{}, true},
		{"bad uuid", strings.Replace(valid, acctA, "alice", 1), Request{}, true},
		{"trailing data", valid + `{}`, Request{}, true},
		{"two objects", valid + valid, Request{}, true},
		{"too large", `{"from_account":"` + acctA + `","reference":"` + strings.Repeat("x", MaxRequestBytes) + `"}`, Request{}, true},
		{"long reference", strings.Replace(valid, "rent", strings.Repeat("r", MaxReferenceLen+1), 1), Request{}, true},
		{"control character", strings.Replace(valid, "rent", `re\u0000nt`, 1), Request{}, true},
		{"C1 control NEL", strings.Replace(valid, "rent", `rent\u0085`, 1), Request{}, true},
		{"C1 control CSI", strings.Replace(valid, "rent", `\u009b31mrent`, 1), Request{}, true},
		{"right-to-left override", strings.Replace(valid, "rent", `rent \u202efdp.exe`, 1), Request{}, true},
		{"right-to-left isolate", strings.Replace(valid, "rent", `re\u2067nt`, 1), Request{}, true},
		{"left-to-right mark", strings.Replace(valid, "rent", `re\u200ent`, 1), Request{}, true},
		{"140 two-byte characters", strings.Replace(valid, "rent", strings.Repeat("é", MaxReferenceLen), 1),
			Request{uuid.MustParse(acctA), uuid.MustParse(acctB), money.Money{Amount: 1250, Currency: "EUR"}, strings.Repeat("é", MaxReferenceLen)}, false},
		{"140 four-byte characters", strings.Replace(valid, "rent", strings.Repeat("😀", MaxReferenceLen), 1),
			Request{uuid.MustParse(acctA), uuid.MustParse(acctB), money.Money{Amount: 1250, Currency: "EUR"}, strings.Repeat("😀", MaxReferenceLen)}, false},
		{"141 two-byte characters", strings.Replace(valid, "rent", strings.Repeat("é", MaxReferenceLen+1), 1), Request{}, true},
		{"array", `[]`, Request{}, true},
		{"duplicate member", strings.Replace(valid, `"reference":"rent"`, `"reference":"rent","reference":"rent"`, 1), Request{}, true},
		{"duplicate to_account", strings.Replace(valid, `"reference"`, `"to_account":"`+acctB+`","reference"`, 1), Request{}, true},
		{"member in upper case", strings.Replace(valid, `"reference"`, `"REFERENCE"`, 1), Request{}, true},
		{"member in mixed case", strings.Replace(valid, `"from_account"`, `"From_Account"`, 1), Request{}, true},
		{"money member in upper case", strings.Replace(valid, `"currency"`, `"Currency"`, 1), Request{}, true},
		{"trailing closing bracket", valid + `]`, Request{}, true},
		{"trailing closing brace", valid + `}`, Request{}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := DecodeRequest(strings.NewReader(tc.body))
			if tc.wantErr {
				if !errors.Is(err, ErrInvalidRequest) && !errors.Is(err, money.ErrSyntax) {
					t.Fatalf("DecodeRequest() error = %v, want an invalid-request error", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("DecodeRequest() mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestHashIgnoresSpellingButNotMeaning(t *testing.T) {
	a, _ := DecodeRequest(strings.NewReader(`{"from_account":"` + acctA + `","to_account":"` + acctB + `","amount":{"amount":5,"currency":"EUR"}}`))
	b, _ := DecodeRequest(strings.NewReader(` { "amount" : { "currency":"EUR", "amount":5 }, "to_account":"` + strings.ToUpper(acctB) + `", "from_account":"` + acctA + `" } `))
	if a.Hash() != b.Hash() {
		t.Error("same request spelled differently hashes differently")
	}
	c := a
	c.Reference = "x"
	if a.Hash() == c.Hash() {
		t.Error("different reference, same hash")
	}
}

// FuzzDecodeRequest checks that whatever the body, the decoder either refuses it or returns
// a request that passes validation and hashes stably.
func FuzzDecodeRequest(f *testing.F) {
	f.Add(`{"from_account":"` + acctA + `","to_account":"` + acctB + `","amount":{"amount":1250,"currency":"EUR"},"reference":"rent"}`)
	f.Add(`{"from_account":"` + acctA + `","to_account":"` + acctA + `","amount":{"amount":1.5,"currency":"EUR"}}`)
	f.Add(`{"amount":{"amount":"1","currency":"usd"}}`)
	f.Add(`null`)
	f.Fuzz(func(t *testing.T, body string) {
		req, err := DecodeRequest(strings.NewReader(body))
		if err != nil {
			if !errors.Is(err, ErrInvalidRequest) {
				t.Fatalf("error %v does not wrap ErrInvalidRequest", err)
			}
			return
		}
		if len(body) > MaxRequestBytes {
			t.Fatalf("accepted a %d-byte body", len(body))
		}
		if err := req.Validate(); err != nil {
			t.Fatalf("decoded request fails validation: %v", err)
		}
		if req.Hash() != req.Hash() {
			t.Fatal("hash not stable")
		}
	})
}
