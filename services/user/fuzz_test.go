package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"testing"

	"github.com/google/uuid"

	"github.com/ztbank/ztbank/libs/problem"
)

// accountServiceOwner reads an open-account body the way the account service does
// (services/account/handlers.go decodeOpen): one strict JSON object with owner_id, name and
// currency, no unknown fields, no trailing data. It is the other half of the differential
// property below, kept here because the account service is another binary.
func accountServiceOwner(body []byte) (uuid.UUID, bool) {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	var req struct {
		OwnerID  uuid.UUID `json:"owner_id"`
		Name     string    `json:"name"`
		Currency string    `json:"currency"`
	}
	if err := dec.Decode(&req); err != nil || dec.More() || req.OwnerID == uuid.Nil {
		return uuid.Nil, false
	}
	return req.OwnerID, true
}

// FuzzOpenAccountOwner feeds arbitrary bodies to the user service's open-account reader.
// The user service decides accounts:open (and checks the owner is a customer) on the owner
// it reads, then relays the same bytes to the account service, which opens the account for
// the owner it reads. The property: whenever both accept, they read the same owner, so no
// body (duplicate keys, case variants, escapes) can get an account opened for someone the
// decision was not about.
func FuzzOpenAccountOwner(f *testing.F) {
	alice := "8d5c1ac0-0000-5000-8000-000000000001"
	carol := "8d5c1ac0-0000-5000-8000-000000000003"
	for _, s := range []string{
		`{"owner_id":"` + alice + `","name":"savings","currency":"EUR"}`,
		`{"owner_id":"` + alice + `","owner_id":"` + carol + `","name":"x","currency":"EUR"}`,
		`{"owner_id":"` + alice + `","OWNER_ID":"` + carol + `","name":"x","currency":"EUR"}`,
		`{"owner_id":"` + alice + `","name":"x","currency":"EUR"} {"owner_id":"` + carol + `"}`,
		`{"owner_\u0069d":"` + carol + `","owner_id":"` + alice + `"}`,
		`{"owner_id":"` + alice + `","name":"x","currency":"EUR","extra":1}`,
		`{"owner_id":null}`, `[]`, ``, `{"owner_id":"` + alice + `"`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		decided, err := openAccountOwner(body)
		if err != nil {
			if !errors.Is(err, problem.ErrBadRequest) {
				t.Fatalf("openAccountOwner refused with %v, want a 400 problem", err)
			}
			return
		}
		if decided == uuid.Nil {
			t.Fatal("openAccountOwner accepted the nil owner")
		}
		if opened, ok := accountServiceOwner(body); ok && opened != decided {
			t.Fatalf("the user service decided on owner %s, the account service would open for %s: %q", decided, opened, body)
		}
	})
}
