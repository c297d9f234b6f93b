package main

import (
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"

	"github.com/ztbank/ztbank/libs/problem"
)

// TestDecodePostingStrict: postings are decoded with the platform's strict decoder, which
// refuses duplicate members (a second "amount" used to win), members in another letter case
// and data after the object, each as a 400 problem.
func TestDecodePostingStrict(t *testing.T) {
	a, b := uuid.NewSHA1(uuid.NameSpaceURL, []byte("a")), uuid.NewSHA1(uuid.NameSpaceURL, []byte("b"))
	valid := `{"reference":"r-1","description":"d","currency":"EUR","entries":[` +
		`{"account_id":"` + a.String() + `","amount":-100},{"account_id":"` + b.String() + `","amount":100}]}`
	for _, tc := range []struct {
		name, body string
		status     int
	}{
		{"valid", valid, 0},
		{"duplicate amount", strings.Replace(valid, `"amount":100`, `"amount":1,"amount":100`, 1), http.StatusBadRequest},
		{"duplicate currency", strings.Replace(valid, `"currency":"EUR"`, `"currency":"USD","currency":"EUR"`, 1), http.StatusBadRequest},
		{"member in upper case", strings.Replace(valid, `"reference"`, `"Reference"`, 1), http.StatusBadRequest},
		{"entry member in upper case", strings.Replace(valid, `"account_id":"`+a.String(), `"ACCOUNT_ID":"`+a.String(), 1), http.StatusBadRequest},
		{"trailing bracket", valid + `]`, http.StatusBadRequest},
		{"trailing object", valid + `{}`, http.StatusBadRequest},
		{"too large", `{"reference":"` + strings.Repeat("r", maxPostingBytes) + `"}`, http.StatusRequestEntityTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := decodePosting(strings.NewReader(tc.body))
			got := 0
			if err != nil {
				got = problem.From(err).Status
			}
			if diff := cmp.Diff(tc.status, got); diff != "" {
				t.Errorf("status (-want +got):\n%s (err %v)", diff, err)
			}
		})
	}
}
