package enrol_test

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/ztbank/ztbank/devkit/demo"
	"github.com/ztbank/ztbank/libs/usertoken"
	"github.com/ztbank/ztbank/services/edge/enrol"
)

var tenants = []string{"bank-a", "bank-b"}

var compareIDs = cmp.Comparer(func(a, b spiffeid.ID) bool { return a == b })

func TestDemoTable(t *testing.T) {
	table, err := enrol.DemoTable(tenants)
	if err != nil {
		t.Fatal(err)
	}
	alice, _ := demo.UserByName("alice@bank-a")
	for _, tc := range []struct {
		name    string
		claims  map[string]any
		want    enrol.User
		wantErr error
	}{
		{"enrolled", map[string]any{"email": "alice@bank-a"},
			enrol.User{ID: spiffeid.RequireFromString("spiffe://bank-a/user/" + alice.ID.String()), Tenant: "bank-a", Roles: []string{"customer"}}, nil},
		{"matching tenant claim", map[string]any{"email": "alice@bank-a", "tenant": "bank-a"},
			enrol.User{ID: spiffeid.RequireFromString("spiffe://bank-a/user/" + alice.ID.String()), Tenant: "bank-a", Roles: []string{"customer"}}, nil},
		{"unknown user", map[string]any{"email": "mallory@bank-a"}, enrol.User{}, enrol.ErrNotEnrolled},
		{"no key claim", map[string]any{"sub": "alice"}, enrol.User{}, enrol.ErrNotEnrolled},
		{"claims other tenant", map[string]any{"email": "alice@bank-a", "tenant": "bank-b"}, enrol.User{}, enrol.ErrNotEnrolled},
		{"key claim not a string", map[string]any{"email": []any{"alice@bank-a"}}, enrol.User{}, enrol.ErrNotEnrolled},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := table.Map(tc.claims)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("Map() error = %v, want %v", err, tc.wantErr)
			}
			if diff := cmp.Diff(tc.want, got, compareIDs); diff != "" {
				t.Errorf("Map() mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestNewTableValidates(t *testing.T) {
	for _, tc := range []struct {
		name  string
		entry enrol.Entry
	}{
		{"unknown tenant", enrol.Entry{Key: "x", Tenant: "bank-z", UserID: "1"}},
		{"path in user id", enrol.Entry{Key: "x", Tenant: "bank-a", UserID: "1/../admin"}},
		{"empty user id", enrol.Entry{Key: "x", Tenant: "bank-a"}},
		{"bad character", enrol.Entry{Key: "x", Tenant: "bank-a", UserID: "a b"}},
		{"empty key", enrol.Entry{Tenant: "bank-a", UserID: "1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := enrol.NewTable("email", tenants, []enrol.Entry{tc.entry}); err == nil {
				t.Error("NewTable() succeeded, want error")
			}
		})
	}
}

func TestClaimsMapper(t *testing.T) {
	m := enrol.Claims{Tenants: tenants}
	for _, tc := range []struct {
		name    string
		claims  map[string]any
		want    enrol.User
		wantErr bool
	}{
		{"ok", map[string]any{"tenant": "bank-b", "sub": "42", "roles": []any{"customer", 7}},
			enrol.User{ID: spiffeid.RequireFromString("spiffe://bank-b/user/42"), Tenant: "bank-b", Roles: []string{"customer"}}, false},
		{"scope-style roles", map[string]any{"tenant": "bank-a", "sub": "7", "roles": "staff customer"},
			enrol.User{ID: spiffeid.RequireFromString("spiffe://bank-a/user/7"), Tenant: "bank-a", Roles: []string{"staff", "customer"}}, false},
		{"unknown tenant", map[string]any{"tenant": "bank-z", "sub": "1"}, enrol.User{}, true},
		{"no tenant", map[string]any{"sub": "1"}, enrol.User{}, true},
		{"sub with a path", map[string]any{"tenant": "bank-a", "sub": "1/admin"}, enrol.User{}, true},
		{"sub with percent", map[string]any{"tenant": "bank-a", "sub": "%2e%2e"}, enrol.User{}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := m.Map(tc.claims)
			if (err != nil) != tc.wantErr {
				t.Fatalf("Map() error = %v, wantErr %v", err, tc.wantErr)
			}
			if diff := cmp.Diff(tc.want, got, compareIDs); diff != "" {
				t.Errorf("Map() mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

// FuzzMapClaims maps arbitrary JSON claim sets with both mappers. Nothing may panic and
// every accepted user must be a well-formed user ID of a known tenant.
func FuzzMapClaims(f *testing.F) {
	table, err := enrol.DemoTable(tenants)
	if err != nil {
		f.Fatal(err)
	}
	mappers := []enrol.Mapper{table, enrol.Claims{Tenants: tenants}}
	f.Add(`{"email":"alice@bank-a","tenant":"bank-a"}`)
	f.Add(`{"tenant":"bank-b","sub":"42","roles":["customer"]}`)
	f.Add(`{"tenant":"bank-b","sub":"../x","roles":"a b"}`)
	f.Fuzz(func(t *testing.T, doc string) {
		var claims map[string]any
		if json.Unmarshal([]byte(doc), &claims) != nil {
			return
		}
		for _, m := range mappers {
			u, err := m.Map(claims)
			if err != nil {
				if !errors.Is(err, enrol.ErrNotEnrolled) {
					t.Fatalf("Map(%s) = %v: not ErrNotEnrolled", doc, err)
				}
				continue
			}
			if err := usertoken.CheckUser(u.ID, u.Tenant); err != nil {
				t.Fatalf("Map(%s) accepted %v: %v", doc, u.ID, err)
			}
		}
	})
}
