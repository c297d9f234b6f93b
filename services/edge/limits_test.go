package main

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/ztbank/ztbank/libs/server"
)

// TestLimitsAnswer429PerUserAndTenant: a user past its burst gets 429 problem+json with
// Retry-After while another user of the same tenant still passes; once the tenant's budget
// is spent every user of that tenant gets 429, and a user of another tenant passes. Refused
// requests never reach a gateway.
func TestLimitsAnswer429PerUserAndTenant(t *testing.T) {
	te := newTestEdge(t)
	frozen := func() time.Time { return time.Unix(1_000_000, 0) } // no refill during the test
	d := te.deps
	d.Limits = &Limits{User: server.NewRateLimiter(1, 2, frozen), Tenant: server.NewRateLimiter(1, 3, frozen),
		InFlight: server.NewConcurrency(8)}
	srv := httptest.NewTLSServer(NewServer(d))
	t.Cleanup(srv.Close)
	tokens := map[string]string{}
	for _, u := range []string{"bob@bank-b", "dave@bank-b", "erin@bank-b", "alice@bank-a"} {
		tokens[u] = te.provider.SignRS256(t, te.claims(u))
	}
	path := map[string]string{"bank-a": "/bank-a/v1/users/me", "bank-b": "/bank-b/v1/accounts"}
	type answer struct {
		User       string
		Status     int
		RetryAfter string
		Detail     string
	}
	var got []answer
	send := func(user, tenant string) {
		req, _ := http.NewRequest(http.MethodGet, srv.URL+path[tenant], nil)
		req.Header.Set("Authorization", "Bearer "+tokens[user])
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var p struct {
			Detail string `json:"detail"`
		}
		if resp.StatusCode == http.StatusTooManyRequests {
			_ = json.Unmarshal(body, &p)
		}
		got = append(got, answer{user, resp.StatusCode, resp.Header.Get("Retry-After"), p.Detail})
	}
	before := len(te.gateways["bank-b"].requests())
	send("bob@bank-b", "bank-b")
	send("bob@bank-b", "bank-b")
	send("bob@bank-b", "bank-b")  // bob's burst of 2 is spent
	send("dave@bank-b", "bank-b") // the tenant's third
	send("erin@bank-b", "bank-b") // the tenant's burst of 3 is spent
	send("alice@bank-a", "bank-a")
	want := []answer{
		{"bob@bank-b", 200, "", ""}, {"bob@bank-b", 200, "", ""},
		{"bob@bank-b", 429, "1", "per-user rate exceeded; retry after 1 s"},
		{"dave@bank-b", 200, "", ""},
		{"erin@bank-b", 429, "1", "per-tenant rate exceeded; retry after 1 s"},
		{"alice@bank-a", 200, "", ""},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("answers (-want +got):\n%s", diff)
	}
	if n := len(te.gateways["bank-b"].requests()) - before; n != 3 {
		t.Errorf("bank-b's gateway saw %d requests, want the 3 admitted", n)
	}
}
