package main

import (
	"net/http"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/ztbank/ztbank/libs/problem"
)

// TestOpenAccountOwnerStrict: the owner the user service decides accounts:open on is read
// with the platform's strict decoder. Before it, a duplicate or case-folded owner_id was
// read by a last-one-wins, case-insensitive parser.
func TestOpenAccountOwnerStrict(t *testing.T) {
	const alice, carol = "8d5c1ac0-0000-5000-8000-000000000001", "8d5c1ac0-0000-5000-8000-000000000003"
	for _, tc := range []struct {
		name, body string
		status     int
	}{
		{"valid", `{"owner_id":"` + alice + `","name":"x","currency":"EUR"}`, 0},
		{"duplicate owner_id", `{"owner_id":"` + alice + `","owner_id":"` + carol + `","name":"x","currency":"EUR"}`, http.StatusBadRequest},
		{"owner_id in upper case", `{"OWNER_ID":"` + alice + `","name":"x","currency":"EUR"}`, http.StatusBadRequest},
		{"trailing object", `{"owner_id":"` + alice + `","name":"x","currency":"EUR"}{}`, http.StatusBadRequest},
		{"trailing bracket", `{"owner_id":"` + alice + `","name":"x","currency":"EUR"}]`, http.StatusBadRequest},
		{"unknown member", `{"owner_id":"` + alice + `","nick":"x"}`, http.StatusBadRequest},
		{"no owner", `{"name":"x","currency":"EUR"}`, http.StatusBadRequest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := openAccountOwner([]byte(tc.body))
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
