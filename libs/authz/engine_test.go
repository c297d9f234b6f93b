package authz

import (
	"context"
	"io"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/ztbank/ztbank/libs/topology"
)

// newTestEngine prepares an engine for the named workload of the default topology, with a
// private registry and audit writer.
func newTestEngine(t testing.TB, workload string, opts ...Option) *Engine {
	t.Helper()
	topo := topology.Default()
	w, ok := topo.Workload(workload)
	if !ok {
		t.Fatalf("no workload %q", workload)
	}
	opts = append([]Option{WithRegisterer(prometheus.NewRegistry()), WithAuditWriter(io.Discard)}, opts...)
	e, err := New(context.Background(), Service{Workload: w.Name, Tenant: w.Tenant, ID: w.ID}, topo, opts...)
	if err != nil {
		t.Fatalf("New(%s): %v", workload, err)
	}
	return e
}

func workloadID(t testing.TB, name string) spiffeid.ID {
	t.Helper()
	w, ok := topology.Default().Workload(name)
	if !ok {
		t.Fatalf("no workload %q", name)
	}
	return w.ID
}

func userID(tenant, id string) spiffeid.ID {
	return spiffeid.RequireFromPath(spiffeid.RequireTrustDomainFromString(tenant), "/user/"+id)
}

var (
	allow                 = Decision{Allow: true, Reason: "allowed"}
	denyNotOwner          = Decision{Reason: "not_owner"}
	denyTenant            = Decision{Reason: "tenant_mismatch"}
	denyRole              = Decision{Reason: "role_not_permitted"}
	denyWorkload          = Decision{Reason: "workload_not_allowed"}
	denyUnknownWorkload   = Decision{Reason: "unknown_workload"}
	denyUnknownPermission = Decision{Reason: "unknown_permission"}
	denyUserRequired      = Decision{Reason: "user_required"}
)

// serviceCase describes one service of the topology as its routes use the policy: the
// workload that normally calls it, one read route and one money-moving write route, and a
// real workload that the topology or the route does not allow.
type serviceCase struct {
	workload  string
	tenant    string
	other     string // the other tenant
	caller    string
	read      route
	write     route
	forbidden string
}

type route struct {
	perm    string
	method  string
	pattern string
	from    []string
}

var services = []serviceCase{
	{
		workload: "bank-a/gateway", tenant: "bank-a", other: "bank-b", caller: "edge",
		read:      route{"accounts:read", "GET", "/v1/accounts/{accountID}", nil},
		write:     route{"payments:create", "POST", "/v1/payments", nil},
		forbidden: "bank-a/user", // calls the gateway's callees, never the gateway
	},
	{
		workload: "bank-a/user", tenant: "bank-a", other: "bank-b", caller: "bank-a/gateway",
		read:      route{"users:read", "GET", "/v1/users/{userID}", nil},
		write:     route{"payments:create", "POST", "/v1/users/{userID}/transfers", nil},
		forbidden: "edge", // must go through the gateway
	},
	{
		workload: "bank-a/account", tenant: "bank-a", other: "bank-b", caller: "bank-a/user",
		read:      route{"accounts:read", "GET", "/v1/accounts/{accountID}", []string{"bank-a/user", "bank-a/gateway"}},
		write:     route{"payments:create", "POST", "/v1/accounts/{accountID}/transfers", nil},
		forbidden: "bank-b/payment", // another tenant's workload
	},
	{
		workload: "bank-b/gateway", tenant: "bank-b", other: "bank-a", caller: "edge",
		read:      route{"payments:read", "GET", "/v1/payments/{paymentID}", nil},
		write:     route{"payments:create", "POST", "/v1/payments", nil},
		forbidden: "bank-a/gateway",
	},
	{
		workload: "bank-b/payment", tenant: "bank-b", other: "bank-a", caller: "bank-b/gateway",
		read:      route{"payments:read", "GET", "/v1/payments/{paymentID}", nil},
		write:     route{"payments:create", "POST", "/v1/payments", []string{"bank-b/gateway"}},
		forbidden: "bank-b/ledger", // the ledger is called by payment, never the reverse
	},
	{
		workload: "bank-b/ledger", tenant: "bank-b", other: "bank-a", caller: "bank-b/payment",
		read:      route{"ledger:read", "GET", "/v1/accounts/{accountID}/entries", nil},
		write:     route{"ledger:post", "POST", "/v1/postings", []string{"bank-b/payment"}},
		forbidden: "bank-a/gateway", // another tenant's gateway
	},
}

// TestDecideAcrossServices runs, for every banking workload of the topology, the cases the
// platform promises: own resource, a neighbour's resource, another tenant's resource and
// user, staff read versus staff write, and workloads not allowed on the service or route.
func TestDecideAcrossServices(t *testing.T) {
	for _, sc := range services {
		t.Run(sc.workload, func(t *testing.T) {
			e := newTestEngine(t, sc.workload)
			alice, carol, sam := userID(sc.tenant, "alice"), userID(sc.tenant, "carol"), userID(sc.tenant, "sam")
			bob, sue := userID(sc.other, "bob"), userID(sc.other, "sue")
			caller := workloadID(t, sc.caller)

			req := func(r route, by spiffeid.ID, tenant string, roles []string, res *Resource) Input {
				return Input{Caller: caller, User: by, Tenant: tenant, Roles: roles, Action: r.perm,
					Method: r.method, Route: r.pattern, Params: map[string]string{"id": "42"}, From: r.from, Resource: res}
			}
			customer, staff := []string{"customer"}, []string{"staff"}
			ownRes := &Resource{Kind: "account", ID: "42", Owner: alice, Tenant: sc.tenant}
			carolsRes := &Resource{Kind: "account", ID: "43", Owner: carol, Tenant: sc.tenant}
			foreignRes := &Resource{Kind: "account", ID: "44", Owner: bob, Tenant: sc.other}
			with := func(in Input, f func(*Input)) Input { f(&in); return in }

			type testCase struct {
				name string
				in   Input
				want Decision
			}
			cases := []testCase{
				{"customer reads own resource", req(sc.read, alice, sc.tenant, customer, ownRes), allow},
				{"customer reads at route level", req(sc.read, alice, sc.tenant, customer, nil), allow},
				{"customer writes own resource", req(sc.write, alice, sc.tenant, customer, ownRes), allow},
				{"customer reads another user's resource", req(sc.read, alice, sc.tenant, customer, carolsRes), denyNotOwner},
				{"customer writes another user's resource", req(sc.write, alice, sc.tenant, customer, carolsRes), denyNotOwner},
				{"customer reads a resource in the other tenant", req(sc.read, alice, sc.tenant, customer, foreignRes), denyTenant},
				{"user of the other tenant reads own resource", req(sc.read, bob, sc.other, customer, foreignRes), denyTenant},
				{"user of the other tenant claims this tenant", req(sc.read, bob, sc.tenant, customer, nil), denyTenant},
				{"staff reads a customer's resource", req(sc.read, sam, sc.tenant, staff, ownRes), allow},
				{"staff writes (moves money)", req(sc.write, sam, sc.tenant, staff, ownRes), denyRole},
				{"staff of the other tenant reads", req(sc.read, sue, sc.other, staff, foreignRes), denyTenant},
				{"staff reads a resource in the other tenant", req(sc.read, sam, sc.tenant, staff, foreignRes), denyTenant},
				{"customer opens an account", req(route{"accounts:open", "POST", "/v1/accounts", nil}, alice, sc.tenant, customer, ownRes), denyRole},
				{"staff opens an account for a customer", req(route{"accounts:open", "POST", "/v1/accounts", nil}, sam, sc.tenant, staff, ownRes), allow},
				{"workload not allowed on the service", with(req(sc.read, alice, sc.tenant, customer, ownRes), func(in *Input) {
					in.Caller = workloadID(t, sc.forbidden)
				}), denyWorkload},
				{"workload not listed on the route", with(req(sc.write, alice, sc.tenant, customer, ownRes), func(in *Input) {
					in.From = []string{sc.workload} // a workload other than the caller
				}), denyWorkload},
				{"unknown workload", with(req(sc.read, alice, sc.tenant, customer, ownRes), func(in *Input) {
					in.Caller = spiffeid.RequireFromString("spiffe://ztbank.local/ns/" + sc.tenant + "/sa/intruder")
				}), denyUnknownWorkload},
				{"workload with no end user", req(sc.read, spiffeid.ID{}, "", nil, nil), denyUserRequired},
				{"unknown permission", req(route{"accounts:delete", "DELETE", "/v1/accounts/{accountID}", nil}, sam, sc.tenant, staff, nil), denyUnknownPermission},
				{"workload-only diagnostics", with(req(route{"whoami", "GET", "/internal/whoami", nil}, spiffeid.ID{}, "", nil, nil), func(in *Input) {
					in.WorkloadOnly = true
				}), allow},
			}
			// A workload the topology lets call the service but the route does not list,
			// e.g. the gateway posting to the ledger directly.
			for _, id := range topology.Default().AllowedCallers(sc.workload) {
				w, _ := topology.Default().WorkloadByID(id)
				if len(sc.write.from) > 0 && !slices.Contains(sc.write.from, w.Name) {
					in := req(sc.write, alice, sc.tenant, customer, ownRes)
					in.Caller = id
					cases = append(cases, testCase{w.Name + " calls a route not listing it", in, denyWorkload})
				}
			}
			for _, tc := range cases {
				t.Run(tc.name, func(t *testing.T) {
					got := e.Decide(t.Context(), tc.in)
					if diff := cmp.Diff(tc.want, got); diff != "" {
						t.Errorf("Decide() mismatch (-want +got):\n%s", diff)
					}
				})
			}
		})
	}
}
