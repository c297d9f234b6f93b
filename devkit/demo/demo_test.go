package demo

import (
	"crypto/sha1"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"

	"github.com/ztbank/ztbank/libs/topology"
)

// uuidV5 recomputes RFC 9562 §5.5 by hand so the test does not only trust the library it checks.
func uuidV5(ns uuid.UUID, name string) uuid.UUID {
	h := sha1.New()
	h.Write(ns[:])
	h.Write([]byte(name))
	var u uuid.UUID
	copy(u[:], h.Sum(nil))
	u[6] = u[6]&0x0f | 0x50
	u[8] = u[8]&0x3f | 0x80
	return u
}

func TestUserIDs(t *testing.T) {
	seen := map[uuid.UUID]string{}
	for _, u := range Users() {
		want := uuidV5(uuid.NameSpaceURL, "ztbank:"+u.Username)
		if u.ID != want {
			t.Errorf("%s: ID = %s, want %s", u.Username, u.ID, want)
		}
		if u.ID.Version() != 5 {
			t.Errorf("%s: version %d, want 5", u.Username, u.ID.Version())
		}
		if prev, ok := seen[u.ID]; ok {
			t.Errorf("%s and %s share ID %s", prev, u.Username, u.ID)
		}
		seen[u.ID] = u.Username
	}
}

func TestUsersRolesAndTenants(t *testing.T) {
	type row struct{ Username, Tenant, Role string }
	var got []row
	for _, u := range Users() {
		// Only the reference tenants' cast is fixed; a tenant added with make tenant gets
		// the standard cast (TestCastFollowsTopology).
		if _, ok := referenceCast[u.Tenant]; ok {
			got = append(got, row{u.Username, u.Tenant, u.Role})
		}
	}
	want := []row{
		{"alice@bank-a", "bank-a", RoleCustomer},
		{"carol@bank-a", "bank-a", RoleStaff},
		{"bob@bank-b", "bank-b", RoleCustomer},
		{"dave@bank-b", "bank-b", RoleCustomer},
		{"erin@bank-b", "bank-b", RoleStaff},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Users() mismatch (-want +got):\n%s", diff)
	}
}

func TestAccountsBelongToCustomersOfTheirTenant(t *testing.T) {
	for _, a := range Accounts() {
		u, ok := UserByName(a.Owner)
		if !ok {
			t.Errorf("account %s: unknown owner %q", a.ID, a.Owner)
			continue
		}
		if u.Tenant != a.Tenant || u.Role != RoleCustomer {
			t.Errorf("account %s: owner %s is %s/%s, want a customer of %s", a.ID, u.Username, u.Tenant, u.Role, a.Tenant)
		}
		if a.Opening <= 0 {
			t.Errorf("account %s: opening balance %d, want positive", a.ID, a.Opening)
		}
		if a.ID != AccountID(a.Owner, a.Name) {
			t.Errorf("account %s: ID not derived from owner and name", a.ID)
		}
	}
}

func TestUsersReturnsCopy(t *testing.T) {
	u := Users()
	u[0].Username = "mallory"
	if Users()[0].Username == "mallory" {
		t.Error("Users() exposes package state")
	}
}

// TestCastFollowsTopology: a tenant without a reference cast gets the standard one (no edit
// here when a tenant is added), and a reference tenant missing from the topology gets none.
func TestCastFollowsTopology(t *testing.T) {
	topo, err := topology.Parse("test.yaml", []byte(`trust_domain: ztbank.local
platform_namespace: ztbank-system
tenants:
  - {name: bank-a, database: bank_a}
  - {name: bank-q, database: bank_q}
workloads:
  - {name: bank-a/gateway, listen: "127.0.0.1:8701", health: "127.0.0.1:9701", tenant: bank-a, service: gateway, calls: [bank-a/user, bank-a/account]}
  - {name: bank-a/user, listen: "127.0.0.1:8702", health: "127.0.0.1:9702", tenant: bank-a, service: user, calls: [bank-a/account]}
  - {name: bank-a/account, listen: "127.0.0.1:8703", health: "127.0.0.1:9703", tenant: bank-a, service: account}
  - {name: bank-q/gateway, listen: "127.0.0.1:8704", health: "127.0.0.1:9704", tenant: bank-q, service: gateway, calls: [bank-q/user, bank-q/account]}
  - {name: bank-q/user, listen: "127.0.0.1:8705", health: "127.0.0.1:9705", tenant: bank-q, service: user, calls: [bank-q/account]}
  - {name: bank-q/account, listen: "127.0.0.1:8706", health: "127.0.0.1:9706", tenant: bank-q, service: account}
`))
	if err != nil {
		t.Fatal(err)
	}
	us, as := castOf(topo)
	type row struct{ Username, Tenant, Role, Display string }
	var got []row
	for _, u := range us {
		got = append(got, row{u.Username, u.Tenant, u.Role, u.DisplayName})
		if u.ID != UserID(u.Username) {
			t.Errorf("%s: ID not derived from the username", u.Username)
		}
	}
	want := []row{
		{"alice@bank-a", "bank-a", RoleCustomer, "Alice Anders"},
		{"carol@bank-a", "bank-a", RoleStaff, "Carol Chen"},
		{"alice@bank-q", "bank-q", RoleCustomer, "Alice of bank-q"},
		{"bob@bank-q", "bank-q", RoleCustomer, "Bob of bank-q"},
		{"carol@bank-q", "bank-q", RoleStaff, "Carol of bank-q"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("castOf users mismatch (-want +got):\n%s", diff)
	}
	var owners []string
	for _, a := range as {
		owners = append(owners, a.Owner+"/"+a.Name)
	}
	wantOwners := []string{"alice@bank-a/current", "alice@bank-a/savings", "alice@bank-q/current", "alice@bank-q/savings", "bob@bank-q/current"}
	if diff := cmp.Diff(wantOwners, owners); diff != "" {
		t.Errorf("castOf accounts mismatch (-want +got):\n%s", diff)
	}
}
