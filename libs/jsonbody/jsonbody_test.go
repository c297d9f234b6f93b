package jsonbody_test

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/ztbank/ztbank/libs/jsonbody"
	"github.com/ztbank/ztbank/libs/money"
	"github.com/ztbank/ztbank/libs/problem"
)

type entry struct {
	Account string `json:"account_id"`
	Amount  int64  `json:"amount"`
}

type embedded struct {
	Note string `json:"note"`
}

type body struct {
	embedded
	Owner   string       `json:"owner_id"`
	Amount  *money.Money `json:"amount"`
	Entries []entry      `json:"entries"`
	Labels  map[string]string
	Extra   any    `json:"extra"`
	Skipped string `json:"-"`
}

func TestUnmarshal(t *testing.T) {
	eur, _ := money.New(5, "EUR")
	tests := []struct {
		name   string
		in     string
		want   body
		detail string // empty: accepted
	}{
		{"accepted", `{"owner_id":"u","amount":{"amount":5,"currency":"EUR"},"entries":[{"account_id":"a","amount":-1}],"note":"n","Labels":{"k":"v"},"extra":{"x":1}}`,
			body{embedded: embedded{Note: "n"}, Owner: "u", Amount: &eur, Entries: []entry{{"a", -1}}, Labels: map[string]string{"k": "v"}, Extra: map[string]any{"x": 1.0}}, ""},
		{"whitespace after the object", "{\"owner_id\":\"u\"} \n\t", body{Owner: "u"}, ""},
		{"trailing object", `{"owner_id":"u"}{"owner_id":"v"}`, body{}, `request body: data after the JSON value ("{" at offset 17)`},
		{"trailing garbage", `{"owner_id":"u"}x`, body{}, "request body: data after the JSON value at offset 16"},
		{"duplicate member", `{"owner_id":"u","owner_id":"v"}`, body{}, `request body: member "owner_id" appears more than once`},
		{"duplicate nested member", `{"entries":[{"amount":1,"amount":2}]}`, body{}, `request body: member "entries[0].amount" appears more than once`},
		{"duplicate inside any", `{"extra":{"x":1,"x":2}}`, body{}, `request body: member "extra.x" appears more than once`},
		{"duplicate inside a map", `{"Labels":{"k":"a","k":"b"}}`, body{}, `request body: member "Labels.k" appears more than once`},
		{"duplicate inside a custom type", `{"amount":{"amount":5,"amount":6,"currency":"EUR"}}`, body{}, `request body: member "amount.amount" appears more than once`},
		{"member of a custom type in upper case", `{"amount":{"AMOUNT":5,"currency":"EUR"}}`, body{}, `request body: invalid money: unknown member "AMOUNT" (member names are case-sensitive)`},
		{"member in upper case", `{"OWNER_ID":"u"}`, body{}, `request body: unknown member "OWNER_ID" (member names are case-sensitive)`},
		{"member in mixed case", `{"Owner_Id":"u"}`, body{}, `request body: unknown member "Owner_Id" (member names are case-sensitive)`},
		{"nested member in other case", `{"entries":[{"Amount":1}]}`, body{}, `request body: unknown member "entries[0].Amount" (member names are case-sensitive)`},
		{"field name instead of tag", `{"Owner":"u"}`, body{}, `request body: unknown member "Owner" (member names are case-sensitive)`},
		{"json:- field", `{"Skipped":"u"}`, body{}, `request body: unknown member "Skipped" (member names are case-sensitive)`},
		{"case-folded duplicate", `{"owner_id":"u","OWNER_ID":"v"}`, body{}, `request body: unknown member "OWNER_ID" (member names are case-sensitive)`},
		{"unknown member", `{"owner":"u"}`, body{}, `request body: unknown member "owner" (member names are case-sensitive)`},
		{"wrong type", `{"owner_id":1}`, body{}, `request body: member "owner_id" has the wrong type (want string)`},
		{"empty", ``, body{}, "request body: empty or truncated JSON"},
		{"truncated", `{"owner_id":"u"`, body{}, "request body: invalid JSON at offset 15"},
		{"not JSON", `owner_id=u`, body{}, "request body: invalid JSON at offset 0"},
		{"too deep", `{"extra":` + strings.Repeat("[", 40) + strings.Repeat("]", 40) + `}`, body{}, "request body: nested deeper than 32 levels"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got body
			err := jsonbody.Unmarshal([]byte(tt.in), &got)
			if tt.detail == "" {
				if err != nil {
					t.Fatalf("Unmarshal: %v", err)
				}
				if diff := cmp.Diff(tt.want, got, cmp.AllowUnexported(body{})); diff != "" {
					t.Errorf("decoded (-want +got):\n%s", diff)
				}
				return
			}
			d := problem.From(err)
			if diff := cmp.Diff(problem.Details{Type: problem.TypeBase + "bad-request", Title: "Bad Request", Status: http.StatusBadRequest, Detail: tt.detail}, d); diff != "" {
				t.Errorf("problem (-want +got):\n%s", diff)
			}
		})
	}
}

func TestRead(t *testing.T) {
	var v body
	err := jsonbody.Read(strings.NewReader(`{"owner_id":"`+strings.Repeat("x", 100)+`"}`), 64, &v)
	if got := problem.From(err).Status; got != http.StatusRequestEntityTooLarge {
		t.Errorf("over the limit: status %d, want 413 (%v)", got, err)
	}
	rd := http.MaxBytesReader(nil, nopBody(`{"owner_id":"`+strings.Repeat("x", 100)+`"}`), 32)
	err = jsonbody.Read(rd, 1024, &v)
	if got := problem.From(err).Status; got != http.StatusRequestEntityTooLarge {
		t.Errorf("cut by MaxBytesReader: status %d, want 413 (%v)", got, err)
	}
	if err := jsonbody.Read(strings.NewReader(`{"owner_id":"u"}`), 64, &v); err != nil || v.Owner != "u" {
		t.Errorf("within the limit: %v, %+v", err, v)
	}
}

func TestUnmarshalNeedsPointer(t *testing.T) {
	var v body
	if err := jsonbody.Unmarshal([]byte(`{}`), v); err == nil || errors.Is(err, problem.ErrBadRequest) {
		t.Errorf("non-pointer: got %v, want a programming error, not a client's 400", err)
	}
}

// FuzzUnmarshal checks that whatever jsonbody accepts, encoding/json accepts too and reads
// the same way, and that the body has no duplicate member name in any object: the strict
// decoder never sees a value another parser of the same bytes would read differently.
func FuzzUnmarshal(f *testing.F) {
	for _, s := range []string{
		`{"owner_id":"u","amount":{"amount":5,"currency":"EUR"},"entries":[{"account_id":"a","amount":-1}]}`,
		`{"owner_id":"u","owner_id":"v"}`, `{"OWNER_ID":"u"}`, `{"owner_id":"u"} {}`, `{"extra":[1,{"a":{"b":null}}]}`,
		`{"Labels":{"k":"v","K":"w"}}`, `{"note":"\u00e9"}`, `[]`, `null`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var got body
		if err := jsonbody.Unmarshal(b, &got); err != nil {
			if !errors.Is(err, problem.ErrBadRequest) {
				t.Fatalf("refusal %v is not a 400", err)
			}
			return
		}
		var std body
		if err := json.Unmarshal(b, &std); err != nil {
			t.Fatalf("jsonbody accepted what encoding/json refuses: %v", err)
		}
		if diff := cmp.Diff(std, got, cmp.AllowUnexported(body{})); diff != "" {
			t.Fatalf("jsonbody and encoding/json read different values (-std +jsonbody):\n%s", diff)
		}
		var generic any
		if err := json.Unmarshal(b, &generic); err != nil {
			t.Fatalf("accepted body is not one JSON value: %v", err)
		}
	})
}

func nopBody(s string) *nopCloser { return &nopCloser{strings.NewReader(s)} }

type nopCloser struct{ *strings.Reader }

func (nopCloser) Close() error { return nil }
