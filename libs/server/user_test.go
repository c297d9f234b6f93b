package server

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/go-chi/chi/v5"
	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/ztbank/ztbank/libs/caller"
	"github.com/ztbank/ztbank/libs/problem"
	"github.com/ztbank/ztbank/libs/topology"
	"github.com/ztbank/ztbank/libs/transport"
)

// TestUserUUID checks the one caller helper every handler uses: it yields the user's UUID
// only for a user of the service's own tenant, including when the token's tenant claim and
// its user ID agree with each other but not with the service (the case a helper that
// re-checked against the token's own claim let through).
func TestUserUUID(t *testing.T) {
	id := uuid.MustParse("6f1c2a0e-8d0b-4d7e-9a39-0d3c1b2f4a55")
	user := func(tenant, idTenant, path string) caller.User {
		return caller.User{ID: spiffeid.RequireFromPath(spiffeid.RequireTrustDomainFromString(idTenant), path), Tenant: tenant}
	}
	for _, tc := range []struct {
		name    string
		user    caller.User
		service string
		want    uuid.UUID
	}{
		{"user of this tenant", user("bank-a", "bank-a", "/user/"+id.String()), "bank-a", id},
		{"no user", caller.User{}, "bank-a", uuid.Nil},
		{"user of another tenant, consistent token", user("bank-b", "bank-b", "/user/"+id.String()), "bank-a", uuid.Nil},
		{"tenant claim disagrees with the ID", user("bank-a", "bank-b", "/user/"+id.String()), "bank-a", uuid.Nil},
		{"service without a tenant", user("bank-a", "bank-a", "/user/"+id.String()), "", uuid.Nil},
		{"not a user path", user("bank-a", "bank-a", "/ns/bank-a/sa/gateway"), "bank-a", uuid.Nil},
		{"not a UUID", user("bank-a", "bank-a", "/user/alice"), "bank-a", uuid.Nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			if !tc.user.ID.IsZero() {
				ctx = caller.WithUser(ctx, tc.user)
			}
			got, err := UserUUID(ctx, tc.service)
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("UserUUID() mismatch (-want +got):\n%s", diff)
			}
			if (tc.want == uuid.Nil) != errors.Is(err, problem.ErrForbidden) {
				t.Errorf("UserUUID() error = %v, want a 403 problem exactly when refused", err)
			}
		})
	}
}

func TestOwnerID(t *testing.T) {
	id := uuid.MustParse("6f1c2a0e-8d0b-4d7e-9a39-0d3c1b2f4a55")
	if got := OwnerID("bank-a", id).String(); got != "spiffe://bank-a/user/"+id.String() {
		t.Errorf("OwnerID() = %s", got)
	}
	if got := OwnerID("bank-a", uuid.Nil); !got.IsZero() {
		t.Errorf("OwnerID(nil) = %s, want zero: nobody owns a system account", got)
	}
}

// TestSameTenantPeer resolves peers by service within the workload's own tenant: the same
// call gives each tenant its own peer, and a service the tenant does not run (or may not
// call) is a start-up error.
func TestSameTenantPeer(t *testing.T) {
	topo := topology.Default()
	runtime := func(workload string) *Runtime {
		self, ok := topo.Workload(workload)
		if !ok {
			t.Fatalf("no workload %s", workload)
		}
		return &Runtime{Topology: topo, Self: self, Env: Env{Mode: transport.Mesh, PeerURL: "http://{service}.{namespace}:8443"},
			Config: Config{Env: Env{PeerURL: "http://{service}.{namespace}:8443"}}}
	}
	for _, tc := range []struct {
		self, service string
		want          string // peer name and URL, or the error
	}{
		{"bank-b/payment", "ledger", "bank-b/ledger http://ledger.bank-b:8443"},
		{"bank-a/user", "account", "bank-a/account http://account.bank-a:8443"},
		{"bank-a/gateway", "user", "bank-a/user http://user.bank-a:8443"},
		{"bank-b/payment", "account", `tenant "bank-b" of bank-b/payment runs no account in the topology`},
		{"bank-a/account", "user", "topology does not allow bank-a/account to call bank-a/user"},
	} {
		t.Run(tc.self+" "+tc.service, func(t *testing.T) {
			var got string
			p, err := runtime(tc.self).SameTenantPeer(tc.service)
			if err != nil {
				got = err.Error()
			} else {
				got = p.Name + " " + p.BaseURL
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("SameTenantPeer(%q) mismatch (-want +got):\n%s", tc.service, diff)
			}
		})
	}
}

// TestPathUUID checks the route-parameter reader the handlers share: a UUID passes, anything
// else is a 400 problem that names the parameter.
func TestPathUUID(t *testing.T) {
	id := uuid.MustParse("6f1c2a0e-8d0b-4d7e-9a39-0d3c1b2f4a55")
	for _, tc := range []struct {
		path       string
		want       uuid.UUID
		wantStatus int // 0: no error
		wantDetail string
	}{
		{"/v1/accounts/" + id.String(), id, 0, ""},
		{"/v1/accounts/not-a-uuid", uuid.Nil, 400, "accountID must be a UUID"},
		{"/v1/accounts/" + id.String() + "x", uuid.Nil, 400, "accountID must be a UUID"},
	} {
		t.Run(tc.path, func(t *testing.T) {
			var got uuid.UUID
			var err error
			r := chi.NewRouter()
			r.Get("/v1/accounts/{accountID}", func(w http.ResponseWriter, r *http.Request) { got, err = PathUUID(r, "accountID") })
			r.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, tc.path, nil))
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("PathUUID mismatch (-want +got):\n%s", diff)
			}
			status, detail := 0, ""
			if err != nil {
				d := problem.From(err)
				status, detail = d.Status, d.Detail
			}
			if diff := cmp.Diff([]any{tc.wantStatus, tc.wantDetail}, []any{status, detail}); diff != "" {
				t.Errorf("PathUUID error mismatch (-want +got):\n%s (err %v)", diff, err)
			}
		})
	}
}
