// Package banking drives the public banking API of both tenants through the real edge of a
// local stack (SPIRE mTLS between every hop, the dev OIDC provider, PostgreSQL with
// rotated credentials), as the demo users would: each does their own banking with a token
// from a headless login and cannot see or move anyone else's money.
package banking

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"

	"github.com/ztbank/ztbank/devkit/demo"
	"github.com/ztbank/ztbank/tests/internal/teststack"
	"github.com/ztbank/ztbank/tools/devstack/stack"
)

var (
	st     *teststack.Stack
	client *http.Client
	tokens map[string]string
)

func TestMain(m *testing.M) {
	teststack.Main(m, "ztgw", stack.Options{FrontDoor: true, Postgres: true,
		// The rotation-under-load test drives 8 clients as two users, far above one user's
		// rate at the edge: it proves rotations fail no request, not rate limiting, which
		// tests/noisytenant proves. 0 switches the edge's user and tenant rates off.
		Configure: func(s *stack.Stack) {
			if e := s.Services["edge"]; e != nil {
				e.Env = append(e.Env, "EDGE_RATE_PER_USER=0", "EDGE_RATE_PER_TENANT=0")
			}
		}}, func(s *teststack.Stack) int {
		st = s
		client = &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{TLSClientConfig: st.EdgeTLS()}}
		var err error
		if tokens, err = st.LoginAll(context.Background(), client); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		return m.Run()
	})
}

type reply struct {
	Status int
	Header http.Header
	Body   map[string]any
	Raw    string
}

// call sends a request through the edge as user.
func call(t *testing.T, user, method, path, key, body string) reply {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(t.Context(), method, st.EdgeURL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+tokens[user])
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if key != "" {
		req.Header.Set("Idempotency-Key", key)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	r := reply{Status: resp.StatusCode, Header: resp.Header, Raw: string(raw)}
	_ = json.Unmarshal(raw, &r.Body)
	return r
}

func expect(t *testing.T, r reply, status int) {
	t.Helper()
	if diff := cmp.Diff(status, r.Status); diff != "" {
		t.Fatalf("status mismatch (-want +got):\n%s\nbody: %s", diff, r.Raw)
	}
}

func amount(t *testing.T, r reply) float64 {
	t.Helper()
	b, ok := r.Body["balance"].(map[string]any)
	if !ok {
		t.Fatalf("no balance in %s", r.Raw)
	}
	return b["amount"].(float64)
}

// TestBankB: bob pays dave through the edge, retries safely, and each sees only their own.
func TestBankB(t *testing.T) {
	bob, dave := demo.AccountID("bob@bank-b", "current").String(), demo.AccountID("dave@bank-b", "current").String()

	r := call(t, "bob@bank-b", "GET", "/bank-b/v1/accounts", "", "")
	expect(t, r, 200)
	if !strings.Contains(r.Raw, bob) || strings.Contains(r.Raw, dave) {
		t.Fatalf("bob's account list: %s", r.Raw)
	}
	bobBefore := amount(t, call(t, "bob@bank-b", "GET", "/bank-b/v1/accounts/"+bob+"/balance", "", ""))
	daveBefore := amount(t, call(t, "dave@bank-b", "GET", "/bank-b/v1/accounts/"+dave+"/balance", "", ""))

	key := uuid.NewString()
	body := fmt.Sprintf(`{"from_account":%q,"to_account":%q,"amount":{"amount":2500,"currency":"EUR"},"reference":"dinner"}`, bob, dave)
	first := call(t, "bob@bank-b", "POST", "/bank-b/v1/payments", key, body)
	expect(t, first, 201)
	retry := call(t, "bob@bank-b", "POST", "/bank-b/v1/payments", key, body)
	expect(t, retry, 201)
	if first.Body["id"] != retry.Body["id"] || retry.Header.Get("Idempotent-Replayed") != "true" {
		t.Errorf("retry: id %v (first %v), replayed %q", retry.Body["id"], first.Body["id"], retry.Header.Get("Idempotent-Replayed"))
	}
	expect(t, call(t, "bob@bank-b", "POST", "/bank-b/v1/payments", key, strings.Replace(body, "2500", "2501", 1)), 422)
	expect(t, call(t, "bob@bank-b", "POST", "/bank-b/v1/payments", "", body), 400)
	expect(t, call(t, "bob@bank-b", "POST", "/bank-b/v1/payments", uuid.NewString(), strings.Replace(body, "2500", "25.00", 1)), 400)

	// Money moved once.
	if got := amount(t, call(t, "bob@bank-b", "GET", "/bank-b/v1/accounts/"+bob+"/balance", "", "")); got != bobBefore-2500 {
		t.Errorf("bob's balance %v, want %v", got, bobBefore-2500)
	}
	if got := amount(t, call(t, "dave@bank-b", "GET", "/bank-b/v1/accounts/"+dave+"/balance", "", "")); got != daveBefore+2500 {
		t.Errorf("dave's balance %v, want %v", got, daveBefore+2500)
	}
	entries := call(t, "dave@bank-b", "GET", "/bank-b/v1/accounts/"+dave+"/entries?limit=200", "", "")
	expect(t, entries, 200)
	if !strings.Contains(entries.Raw, fmt.Sprint(first.Body["ledger_transaction_id"])) {
		t.Errorf("dave's entries lack the payment's transaction: %s", entries.Raw)
	}

	id := fmt.Sprint(first.Body["id"])
	expect(t, call(t, "bob@bank-b", "GET", "/bank-b/v1/payments/"+id, "", ""), 200)
	expect(t, call(t, "erin@bank-b", "GET", "/bank-b/v1/payments/"+id, "", ""), 200)
	for _, tc := range []struct {
		name, user, method, path, body string
		status                         int
	}{
		{"dave reads bob's payment", "dave@bank-b", "GET", "/bank-b/v1/payments/" + id, "", 403},
		{"dave reads bob's balance", "dave@bank-b", "GET", "/bank-b/v1/accounts/" + bob + "/balance", "", 403},
		{"dave reads bob's entries", "dave@bank-b", "GET", "/bank-b/v1/accounts/" + bob + "/entries", "", 403},
		{"dave pays from bob's account", "dave@bank-b", "POST", "/bank-b/v1/payments", body, 403},
		{"staff moves money", "erin@bank-b", "POST", "/bank-b/v1/payments", body, 403},
		{"bank-a user in bank-b", "alice@bank-a", "GET", "/bank-b/v1/accounts/" + bob + "/balance", "", 403},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := call(t, tc.user, tc.method, tc.path, uuid.NewString(), tc.body)
			if r.Status != tc.status || strings.Contains(r.Raw, `"balance"`) || strings.Contains(r.Raw, "from_account") {
				t.Errorf("status %d (want %d), body %s", r.Status, tc.status, r.Raw)
			}
		})
	}
}

// TestBankA: alice reads her profile and accounts; carol (staff) opens one for her.
func TestBankA(t *testing.T) {
	alice := demo.UserID("alice@bank-a").String()
	me := call(t, "alice@bank-a", "GET", "/bank-a/v1/users/me", "", "")
	expect(t, me, 200)
	if me.Body["id"] != alice {
		t.Fatalf("users/me: %s", me.Raw)
	}
	accts := call(t, "alice@bank-a", "GET", "/bank-a/v1/users/"+alice+"/accounts", "", "")
	expect(t, accts, 200)
	if !strings.Contains(accts.Raw, demo.AccountID("alice@bank-a", "current").String()) {
		t.Fatalf("alice's accounts: %s", accts.Raw)
	}
	name := "e2e-" + uuid.NewString()[:8]
	opened := call(t, "carol@bank-a", "POST", "/bank-a/v1/accounts", "", fmt.Sprintf(`{"owner_id":%q,"name":%q,"currency":"EUR"}`, alice, name))
	expect(t, opened, 201)
	expect(t, call(t, "alice@bank-a", "GET", "/bank-a/v1/accounts/"+fmt.Sprint(opened.Body["id"]), "", ""), 200)
	expect(t, call(t, "alice@bank-a", "POST", "/bank-a/v1/accounts", "", fmt.Sprintf(`{"owner_id":%q,"name":"mine","currency":"EUR"}`, alice)), 403)
	expect(t, call(t, "bob@bank-b", "GET", "/bank-a/v1/users/"+alice, "", ""), 403)

	doc := call(t, "alice@bank-a", "GET", "/bank-a/v1/openapi.yaml", "", "")
	expect(t, doc, 200)
	if !strings.Contains(doc.Raw, "/v1/users/{userID}/accounts") {
		t.Errorf("bank-a OpenAPI document through the edge: %.200s", doc.Raw)
	}
}
