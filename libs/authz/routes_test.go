package authz

import (
	"net/http"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestRoutePermissions reads back what each route's Require declares from the fixture's
// real router, FromSameTenant resolved to the tenant's workload, and lists a route someone
// forgot to guard with no permission.
func TestRoutePermissions(t *testing.T) {
	f := newLedgerFixture(t)
	f.router.Get("/v1/forgotten", func(http.ResponseWriter, *http.Request) {})
	got, err := RoutePermissions(f.router)
	if err != nil {
		t.Fatal(err)
	}
	want := []RoutePermission{
		{Method: "GET", Pattern: "/internal/whoami", Permission: "whoami", WorkloadOnly: true},
		{Method: "GET", Pattern: "/v1/accounts/{accountID}/entries", Permission: "ledger:read"},
		{Method: "GET", Pattern: "/v1/forgotten"},
		{Method: "POST", Pattern: "/v1/postings", Permission: "ledger:post", From: []string{"bank-b/payment"}},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("RoutePermissions() mismatch (-want +got):\n%s", diff)
	}
}
