package enrol_test

import (
	"encoding/json"
	"errors"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/ztbank/ztbank/devkit/demo"
	"github.com/ztbank/ztbank/devkit/devoidc"
	"github.com/ztbank/ztbank/libs/usertoken"
	"github.com/ztbank/ztbank/services/edge/enrol"
)

const (
	idpA = "https://idp.bank-a.example"
	idpB = "https://idp.bank-b.example"
	// shared is one provider for every tenant, as in the local stacks.
	shared = "https://127.0.0.1:9443"
)

// ownIssuers gives each bank its own provider, as a deployment does.
var ownIssuers = enrol.Issuers{"bank-a": {idpA}, "bank-b": {idpB}}

var sharedIssuer = enrol.Issuers{"bank-a": {shared}, "bank-b": {shared}}

var compareIDs = cmp.Comparer(func(a, b spiffeid.ID) bool { return a == b })

func user(tenant, id string, roles ...string) enrol.User {
	return enrol.User{ID: spiffeid.RequireFromString("spiffe://" + tenant + "/user/" + id), Tenant: tenant, Roles: roles}
}

// TestDevoidcTableLoads is the contract between the development provider and the edge: the
// enrolment.json the provider writes for the local stacks loads with LoadTable and maps the
// demo users to the IDs the seed data holds.
func TestDevoidcTableLoads(t *testing.T) {
	path := filepath.Join(t.TempDir(), devoidc.EnrolmentFile)
	if err := devoidc.WriteEnrolment(path, devoidc.DemoUsers()); err != nil {
		t.Fatal(err)
	}
	table, err := enrol.LoadTable(path, "email", sharedIssuer)
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range demo.Users() {
		got, err := table.Map(shared, map[string]any{"email": u.Username})
		if err != nil {
			t.Errorf("Map(%s): %v", u.Username, err)
			continue
		}
		if diff := cmp.Diff(user(u.Tenant, u.ID.String(), u.Role), got, compareIDs); diff != "" {
			t.Errorf("Map(%s) mismatch (-want +got):\n%s", u.Username, diff)
		}
	}
}

func TestTable(t *testing.T) {
	table, err := enrol.NewTable("email", ownIssuers, []enrol.Entry{
		{Key: "alice@example.com", Tenant: "bank-a", UserID: "a1", Roles: []string{"customer"}},
		// The same address at the other bank's provider is another person.
		{Key: "alice@example.com", Tenant: "bank-b", UserID: "b1", Roles: []string{"staff"}},
		{Key: "carol@example.com", Tenant: "bank-a", UserID: "a2", Roles: []string{"customer"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		issuer  string
		claims  map[string]any
		want    enrol.User
		wantErr error
	}{
		{"bank-a's provider: bank-a's alice", idpA, map[string]any{"email": "alice@example.com"}, user("bank-a", "a1", "customer"), nil},
		{"bank-b's provider: bank-b's alice", idpB, map[string]any{"email": "alice@example.com"}, user("bank-b", "b1", "staff"), nil},
		{"matching tenant claim", idpA, map[string]any{"email": "alice@example.com", "tenant": "bank-a"}, user("bank-a", "a1", "customer"), nil},
		{"bank-a user from bank-b's provider", idpB, map[string]any{"email": "carol@example.com"}, enrol.User{}, enrol.ErrNotEnrolled},
		{"bank-a user from bank-b's provider claiming bank-a", idpB, map[string]any{"email": "carol@example.com", "tenant": "bank-a"}, enrol.User{}, enrol.ErrNotEnrolled},
		{"untrusted provider", "https://evil.example", map[string]any{"email": "alice@example.com"}, enrol.User{}, enrol.ErrNotEnrolled},
		{"unknown user", idpA, map[string]any{"email": "mallory@example.com"}, enrol.User{}, enrol.ErrNotEnrolled},
		{"no key claim", idpA, map[string]any{"sub": "alice"}, enrol.User{}, enrol.ErrNotEnrolled},
		{"claims other tenant", idpA, map[string]any{"email": "alice@example.com", "tenant": "bank-b"}, enrol.User{}, enrol.ErrNotEnrolled},
		{"key claim not a string", idpA, map[string]any{"email": []any{"alice@example.com"}}, enrol.User{}, enrol.ErrNotEnrolled},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := table.Map(tc.issuer, tc.claims)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("Map() error = %v, want %v", err, tc.wantErr)
			}
			if diff := cmp.Diff(tc.want, got, compareIDs); diff != "" {
				t.Errorf("Map() mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

// TestTableSharedIssuerAmbiguous: where one provider serves both tenants, a key enrolled in
// both is refused rather than resolved to whichever tenant comes first.
func TestTableSharedIssuerAmbiguous(t *testing.T) {
	table, err := enrol.NewTable("email", sharedIssuer, []enrol.Entry{
		{Key: "pat@example.com", Tenant: "bank-a", UserID: "a1"},
		{Key: "pat@example.com", Tenant: "bank-b", UserID: "b1"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if u, err := table.Map(shared, map[string]any{"email": "pat@example.com"}); !errors.Is(err, enrol.ErrNotEnrolled) {
		t.Errorf("Map() = %v, %v; want ErrNotEnrolled", u, err)
	}
}

func TestNewTableValidates(t *testing.T) {
	for _, tc := range []struct {
		name    string
		entries []enrol.Entry
	}{
		{"unknown tenant", []enrol.Entry{{Key: "x", Tenant: "bank-z", UserID: "1"}}},
		{"path in user id", []enrol.Entry{{Key: "x", Tenant: "bank-a", UserID: "1/../admin"}}},
		{"empty user id", []enrol.Entry{{Key: "x", Tenant: "bank-a"}}},
		{"bad character", []enrol.Entry{{Key: "x", Tenant: "bank-a", UserID: "a b"}}},
		{"empty key", []enrol.Entry{{Tenant: "bank-a", UserID: "1"}}},
		{"twice in one tenant", []enrol.Entry{{Key: "x", Tenant: "bank-a", UserID: "1"}, {Key: "x", Tenant: "bank-a", UserID: "2"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := enrol.NewTable("email", ownIssuers, tc.entries); err == nil {
				t.Error("NewTable() succeeded, want error")
			}
		})
	}
}

func TestParseTableRefusesUnknownFields(t *testing.T) {
	_, err := enrol.ParseTable([]byte(`[{"key":"x","tenant":"bank-a","user_id":"1","role":["staff"]}]`), "email", ownIssuers)
	if err == nil {
		t.Error("ParseTable() accepted a misspelt column")
	}
}

func TestClaimsMapper(t *testing.T) {
	m := enrol.Claims{Issuers: ownIssuers}
	for _, tc := range []struct {
		name    string
		issuer  string
		claims  map[string]any
		want    enrol.User
		wantErr bool
	}{
		{"ok", idpB, map[string]any{"tenant": "bank-b", "sub": "42", "roles": []any{"customer", 7}}, user("bank-b", "42", "customer"), false},
		{"scope-style roles", idpA, map[string]any{"tenant": "bank-a", "sub": "7", "roles": "staff customer"}, user("bank-a", "7", "staff", "customer"), false},
		{"bank-b's provider names bank-a", idpB, map[string]any{"tenant": "bank-a", "sub": "7"}, enrol.User{}, true},
		{"untrusted provider", "https://evil.example", map[string]any{"tenant": "bank-a", "sub": "7"}, enrol.User{}, true},
		{"unknown tenant", idpA, map[string]any{"tenant": "bank-z", "sub": "1"}, enrol.User{}, true},
		{"no tenant", idpA, map[string]any{"sub": "1"}, enrol.User{}, true},
		{"sub with a path", idpA, map[string]any{"tenant": "bank-a", "sub": "1/admin"}, enrol.User{}, true},
		{"sub with percent", idpA, map[string]any{"tenant": "bank-a", "sub": "%2e%2e"}, enrol.User{}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := m.Map(tc.issuer, tc.claims)
			if (err != nil) != tc.wantErr {
				t.Fatalf("Map() error = %v, wantErr %v", err, tc.wantErr)
			}
			if err != nil && !errors.Is(err, enrol.ErrNotEnrolled) {
				t.Errorf("Map() error = %v, want ErrNotEnrolled", err)
			}
			if diff := cmp.Diff(tc.want, got, compareIDs); diff != "" {
				t.Errorf("Map() mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

// FuzzMapClaims maps arbitrary JSON claim sets with both mappers. Nothing may panic, every
// accepted user must be a well-formed user ID of a tenant that trusts the token's issuer.
func FuzzMapClaims(f *testing.F) {
	b, err := devoidc.EnrolmentTable(devoidc.DemoUsers())
	if err != nil {
		f.Fatal(err)
	}
	issuers := enrol.Issuers{"bank-a": {idpA, shared}, "bank-b": {idpB, shared}}
	table, err := enrol.ParseTable(b, "email", issuers)
	if err != nil {
		f.Fatal(err)
	}
	mappers := []enrol.Mapper{table, enrol.Claims{Issuers: issuers}}
	f.Add(idpA, `{"email":"alice@bank-a","tenant":"bank-a"}`)
	f.Add(idpB, `{"tenant":"bank-b","sub":"42","roles":["customer"]}`)
	f.Add(shared, `{"tenant":"bank-b","sub":"../x","roles":"a b"}`)
	f.Fuzz(func(t *testing.T, issuer, doc string) {
		var claims map[string]any
		if json.Unmarshal([]byte(doc), &claims) != nil {
			return
		}
		for _, m := range mappers {
			u, err := m.Map(issuer, claims)
			if err != nil {
				if !errors.Is(err, enrol.ErrNotEnrolled) {
					t.Fatalf("Map(%s) = %v: not ErrNotEnrolled", doc, err)
				}
				continue
			}
			if err := usertoken.CheckUser(u.ID, u.Tenant); err != nil {
				t.Fatalf("Map(%s) accepted %v: %v", doc, u.ID, err)
			}
			found := false
			for _, iss := range issuers[u.Tenant] {
				found = found || iss == issuer
			}
			if !found {
				t.Fatalf("Map(%s, %s) = user of %s, which does not trust that issuer", issuer, doc, u.Tenant)
			}
		}
	})
}
