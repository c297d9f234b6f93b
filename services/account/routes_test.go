package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"

	"github.com/ztbank/ztbank/devkit/demo"
	"github.com/ztbank/ztbank/devkit/localpg/pgtest"
	"github.com/ztbank/ztbank/devkit/servertest"
	"github.com/ztbank/ztbank/services/account/store"
)

var accountStore *store.Store

func TestMain(m *testing.M) {
	os.Exit(pgtest.MainSeeded(m, func(ctx context.Context, e *pgtest.Env) error {
		pool, err := e.Pool(ctx, "account_svc", "bank_a")
		accountStore = store.New(pool)
		return err
	}))
}

// newStack serves the account service's real router with the real policy engine and token
// verifier; tests name the calling workload as the mesh sidecar would.
func newStack(t *testing.T) *servertest.Harness {
	t.Helper()
	h := servertest.New(t, "bank-a/account")
	h.Serve(NewServer(h.Runtime, nil, accountStore))
	return h
}

func TestRoutes(t *testing.T) {
	pgtest.Require(t)
	s := newStack(t)
	alice, carol := demo.UserID("alice@bank-a").String(), demo.UserID("carol@bank-a").String()
	aliceCurrent := demo.AccountID("alice@bank-a", "current").String()
	newName := fmt.Sprintf("travel-%d", os.Getpid())
	open := func(owner, name, currency string) string {
		return fmt.Sprintf(`{"owner_id":%q,"name":%q,"currency":%q}`, owner, name, currency)
	}
	for _, tc := range []struct {
		name       string
		workload   string
		user       string
		method     string
		path       string
		body       string
		wantStatus int
		want       string
		forbidden  string
	}{
		{"own account", "bank-a/gateway", "alice@bank-a", "GET", "/v1/accounts/" + aliceCurrent, "", 200, `"amount":250000`, ""},
		{"staff reads within tenant", "bank-a/gateway", "carol@bank-a", "GET", "/v1/accounts/" + aliceCurrent, "", 200, `"amount":250000`, ""},
		{"unknown account, customer", "bank-a/gateway", "alice@bank-a", "GET", "/v1/accounts/" + uuid.NewString(), "", 403, "decision_id", ""},
		{"unknown account, staff", "bank-a/gateway", "carol@bank-a", "GET", "/v1/accounts/" + uuid.NewString(), "", 404, "", ""},
		{"other tenant's token", "bank-a/gateway", "bob@bank-b", "GET", "/v1/accounts/" + aliceCurrent, "", 401, "", "250000"},
		{"own accounts via user service", "bank-a/user", "alice@bank-a", "GET", "/v1/users/" + alice + "/accounts", "", 200, aliceCurrent, ""},
		{"listing is for the user service only", "bank-a/gateway", "alice@bank-a", "GET", "/v1/users/" + alice + "/accounts", "", 403, "", aliceCurrent},
		{"another user's accounts", "bank-a/user", "alice@bank-a", "GET", "/v1/users/" + carol + "/accounts", "", 403, "decision_id", ""},
		{"staff opens an account", "bank-a/user", "carol@bank-a", "POST", "/v1/accounts", open(alice, newName, "EUR"), 201, `"amount":0`, ""},
		{"same name again", "bank-a/user", "carol@bank-a", "POST", "/v1/accounts", open(alice, newName, "EUR"), 409, "", ""},
		{"customer cannot open", "bank-a/user", "alice@bank-a", "POST", "/v1/accounts", open(alice, "mine", "EUR"), 403, "decision_id", ""},
		{"bad currency", "bank-a/user", "carol@bank-a", "POST", "/v1/accounts", open(alice, "x", "XXX"), 422, "", ""},
		{"unknown field", "bank-a/user", "carol@bank-a", "POST", "/v1/accounts", `{"owner_id":"` + alice + `","name":"y","currency":"EUR","balance":100}`, 400, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, body := s.Do(tc.workload, tc.user, tc.method, tc.path, tc.body)
			servertest.Check(t, tc.method+" "+tc.path, status, body, tc.wantStatus, []string{tc.want}, []string{tc.forbidden})
		})
	}
	// The opened account is alice's, with a zero balance, and listed for her.
	status, body := s.Do("bank-a/user", "alice@bank-a", "GET", "/v1/users/"+alice+"/accounts", "")
	var got struct{ Accounts []store.Account }
	if err := json.Unmarshal([]byte(body), &got); status != 200 || err != nil {
		t.Fatalf("list: %d %v %s", status, err, body)
	}
	var names []string
	for _, a := range got.Accounts {
		names = append(names, a.Name)
	}
	if diff := cmp.Diff([]string{"current", "savings", newName}, names); diff != "" {
		t.Errorf("alice's accounts mismatch (-want +got):\n%s", diff)
	}
}
