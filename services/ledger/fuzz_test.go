package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/url"
	"strconv"
	"testing"

	"github.com/google/uuid"

	"github.com/ztbank/ztbank/libs/problem"
)

// FuzzDecodePosting feeds arbitrary bodies to the POST /v1/postings decoder, which reads
// the shared ledgerapi.PostingRequest (integer amounts by type). The property is checked
// against an independent reading of the same body: whatever is accepted is valid, in exactly
// the currency the body names, with exactly the entries and integer amounts the body lists
// (the seeds keep the currencies that once smuggled keys into a pasted document).
func FuzzDecodePosting(f *testing.F) {
	a, b := uuid.NewSHA1(uuid.NameSpaceURL, []byte("a")), uuid.NewSHA1(uuid.NameSpaceURL, []byte("b"))
	posting := func(currency string, amounts ...string) string {
		return `{"reference":"r-1","description":"d","currency":` + currency + `,"entries":[` +
			`{"account_id":"` + a.String() + `","amount":` + amounts[0] + `},` +
			`{"account_id":"` + b.String() + `","amount":` + amounts[1] + `}]}`
	}
	for _, s := range []string{
		posting(`"EUR"`, "-100", "100"),
		posting(`"EUR\",\"amount\":5,\"x\":\""`, "-100", "100"),
		posting(`"EUR\",\"currency\":\"USD"`, "-100", "100"),
		posting(`"\u0045UR"`, "-1", "1"),
		posting(`"EUR"`, "-1.0", "1"),
		posting(`"EUR"`, "-1e2", "1e2"),
		posting(`"EUR"`, `"-1"`, `"1"`),
		`{"reference":"r","currency":"EUR","entries":[]}`,
		`{}`, `[]`, `null`, ``,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		tx, err := decodePosting(bytes.NewReader(body))
		if err != nil {
			if !errors.Is(err, problem.ErrBadRequest) && !errors.Is(err, problem.ErrUnprocessable) {
				t.Fatalf("decodePosting refused with %v, want a 400 or 422 problem", err)
			}
			return
		}
		if err := tx.Validate(); err != nil {
			t.Fatalf("accepted an invalid transaction: %v", err)
		}
		// The independent reading: generic JSON, numbers kept as their literal text.
		dec := json.NewDecoder(bytes.NewReader(body))
		dec.UseNumber()
		var doc struct {
			Reference, Description, Currency string
			Entries                          []struct {
				AccountID string `json:"account_id"`
				Amount    json.Number
			}
		}
		if err := dec.Decode(&doc); err != nil {
			t.Fatalf("accepted a body that generic JSON cannot read: %v", err)
		}
		if string(tx.Currency) != doc.Currency || tx.Reference != doc.Reference || tx.Description != doc.Description {
			t.Fatalf("accepted currency/reference/description %q %q %q, body says %q %q %q",
				tx.Currency, tx.Reference, tx.Description, doc.Currency, doc.Reference, doc.Description)
		}
		if len(tx.Postings) != len(doc.Entries) {
			t.Fatalf("accepted %d postings for %d entries", len(tx.Postings), len(doc.Entries))
		}
		for i, e := range doc.Entries {
			want, err := strconv.ParseInt(string(e.Amount), 10, 64)
			if err != nil {
				t.Fatalf("entry %d: accepted amount %q, which is not an integer literal", i, e.Amount)
			}
			if tx.Postings[i].Amount != want || tx.Postings[i].AccountID.String() != e.AccountID {
				t.Fatalf("entry %d: accepted %s %d, body says %s %s", i, tx.Postings[i].AccountID,
					tx.Postings[i].Amount, e.AccountID, e.Amount)
			}
		}
	})
}

// FuzzParsePage feeds arbitrary query strings to the entries page parser (limit, cursor).
// Accepted pages are always within the bounds the query layer relies on, a missing limit
// is the default, and every cursor the ledger hands out (next_cursor, a non-negative entry
// ID) reads back as itself.
func FuzzParsePage(f *testing.F) {
	for _, s := range []string{"", "limit=1", "limit=200", "limit=201", "limit=0", "limit=-1", "limit=+5",
		"cursor=0", "cursor=-1", "cursor=9223372036854775807", "cursor=9223372036854775808",
		"limit=10&limit=1000", "limit=%31%30", "cursor=1e3", "limit= 5", "limit=5;cursor=3"} {
		f.Add(s, int64(42))
	}
	f.Fuzz(func(t *testing.T, rawQuery string, cursor int64) {
		q, err := url.ParseQuery(rawQuery)
		if err != nil {
			return // net/http answers a malformed query before the handler
		}
		limit, after, err := parsePage(q)
		if err != nil {
			if !errors.Is(err, problem.ErrBadRequest) {
				t.Fatalf("parsePage(%q) = %v, want a 400 problem", rawQuery, err)
			}
		} else {
			if limit < 1 || limit > maxPageSize || after < 0 {
				t.Fatalf("parsePage(%q) = limit %d, after %d: out of bounds", rawQuery, limit, after)
			}
			if q.Get("limit") == "" && limit != defaultPageSize {
				t.Fatalf("parsePage(%q) = limit %d without a limit, want %d", rawQuery, limit, defaultPageSize)
			}
		}
		if cursor < 0 {
			return
		}
		next := url.Values{"cursor": {strconv.FormatInt(cursor, 10)}}
		if _, after, err := parsePage(next); err != nil || after != cursor {
			t.Fatalf("next_cursor %d read back as %d, %v", cursor, after, err)
		}
	})
}
