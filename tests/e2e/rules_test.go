package e2e

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/ztbank/ztbank/devkit/demo"
)

func route(name string) Route {
	for _, r := range Routes {
		if r.Name() == name {
			return r
		}
	}
	panic("no route " + name)
}

func user(name string) Identity {
	u, ok := demo.UserByName(name)
	if !ok {
		panic("no user " + name)
	}
	return Identity{Kind: EndUser, User: u}
}

func account(owner, name string) Target {
	u, _ := demo.UserByName(owner)
	return Target{Relation: Own, Kind: AccountResource, ID: demo.AccountID(owner, name).String(), Owner: owner, Tenant: u.Tenant}
}

func profile(username string) Target {
	u, _ := demo.UserByName(username)
	return Target{Relation: Own, Kind: UserResource, ID: u.ID.String(), Owner: username, Tenant: u.Tenant}
}

// TestExpect pins the oracle to outcomes worked out by hand from DESIGN.md §6, so a change
// to the rules is a visible decision and not a side effect.
func TestExpect(t *testing.T) {
	gw, _ := topo.Workload("bank-a/gateway")
	payment, _ := topo.Workload("bank-b/payment")
	for _, tc := range []struct {
		name   string
		id     Identity
		route  string
		target Target
		want   Expectation
	}{
		{"anonymous", Identity{Kind: Anonymous}, "GET /bank-a/v1/users/me", Target{Relation: NoTarget}, Expectation{401, LayerEdge}},
		{"alice reads herself", user("alice@bank-a"), "GET /bank-a/v1/users/{userID}", profile("alice@bank-a"), Expectation{200, LayerNone}},
		{"alice reads carol", user("alice@bank-a"), "GET /bank-a/v1/users/{userID}", profile("carol@bank-a"), Expectation{403, LayerPolicy}},
		{"alice names bob at bank-a", user("alice@bank-a"), "GET /bank-a/v1/users/{userID}", profile("bob@bank-b"), Expectation{403, LayerPolicy}},
		{"carol names bob at bank-a", user("carol@bank-a"), "GET /bank-a/v1/users/{userID}", profile("bob@bank-b"), Expectation{404, LayerNotFound}},
		{"carol lists bob's accounts at bank-a", user("carol@bank-a"), "GET /bank-a/v1/users/{userID}/accounts", profile("bob@bank-b"), Expectation{200, LayerNone}},
		{"carol opens for alice", user("carol@bank-a"), "POST /bank-a/v1/accounts", profile("alice@bank-a"), Expectation{201, LayerNone}},
		{"carol opens for herself", user("carol@bank-a"), "POST /bank-a/v1/accounts", profile("carol@bank-a"), Expectation{422, LayerRule}},
		{"alice opens", user("alice@bank-a"), "POST /bank-a/v1/accounts", profile("alice@bank-a"), Expectation{403, LayerPolicy}},
		{"alice on bank-b", user("alice@bank-a"), "GET /bank-b/v1/accounts/{accountID}/balance", account("bob@bank-b", "current"), Expectation{403, LayerEdge}},
		{"bob pays from his account", user("bob@bank-b"), "POST /bank-b/v1/payments", account("bob@bank-b", "current"), Expectation{201, LayerNone}},
		{"bob pays from dave's", user("bob@bank-b"), "POST /bank-b/v1/payments", account("dave@bank-b", "current"), Expectation{403, LayerPolicy}},
		{"erin reads bob's balance", user("erin@bank-b"), "GET /bank-b/v1/accounts/{accountID}/balance", account("bob@bank-b", "current"), Expectation{200, LayerNone}},
		{"erin moves money", user("erin@bank-b"), "POST /bank-b/v1/payments", account("bob@bank-b", "current"), Expectation{403, LayerPolicy}},
		{"gateway SVID without a user", Identity{Kind: Workload, Workload: gw}, "GET /bank-a/v1/users/me", Target{Relation: NoTarget}, Expectation{401, LayerJWT}},
		{"payment SVID at bank-a user", Identity{Kind: Workload, Workload: payment}, "GET /bank-a/v1/users/me", Target{Relation: NoTarget}, Expectation{0, LayerMTLS}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := Expect(topo, tc.id, route(tc.route), tc.target)
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("Expect() mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestForeignAndLeaks(t *testing.T) {
	bobID := demo.UserID("bob@bank-b").String()
	aliceID := demo.UserID("alice@bank-a").String()
	for _, tc := range []struct {
		name       string
		id         Identity
		body, echo string
		want       []string
	}{
		{"own data", user("alice@bank-a"), `{"id":"` + aliceID + `"}`, "/v1/users/me", nil},
		{"other tenant's ID", user("alice@bank-a"), `{"id":"` + bobID + `"}`, "/v1/users/me", []string{bobID}},
		{"echo of the caller's own input", user("alice@bank-a"), `{"instance":"/v1/users/` + bobID + `"}`, "/v1/users/" + bobID, nil},
		{"staff sees the tenant", user("carol@bank-a"), `{"id":"` + aliceID + `"}`, "", nil},
		{"staff does not see the other tenant", user("erin@bank-b"), `{"name":"Alice Anders"}`, "", []string{"Alice Anders"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := leaks(tc.body, tc.echo, Foreign(tc.id))
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("leaks() mismatch (-want +got):\n%s", diff)
			}
		})
	}
}
