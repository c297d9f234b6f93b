package e2e

import (
	"fmt"
	"slices"

	"github.com/ztbank/ztbank/libs/demo"
	"github.com/ztbank/ztbank/libs/topology"
)

// Case is one generated check.
type Case struct {
	Identity Identity
	Route    Route
	Target   Target
	Want     Expectation
	// Direct cases skip the edge and call Route.Service over mTLS with the identity's SVID.
	Direct bool
}

// Name is unique across the generated cases and stable between runs.
func (c Case) Name() string {
	n := c.Identity.Name() + " " + c.Route.Name()
	if c.Direct {
		n = c.Identity.Name() + " → " + c.Route.Service + " " + c.Route.Method + " " + c.Route.Path
	}
	if c.Target.Relation != NoTarget {
		n += " [" + string(c.Target.Relation) + " " + string(c.Target.Kind) + "]"
	}
	return n
}

// Generate builds every case from the topology, the demo users and routes: each demo user
// and an anonymous caller on each route through the edge, with a target of each relation
// where the route names a resource; and each workload's SVID calling each tenant service's
// routes directly.
func Generate(topo *topology.Topology, routes []Route) []Case {
	var cases []Case
	front := []Identity{{Kind: Anonymous}}
	for _, u := range demo.Users() {
		front = append(front, Identity{Kind: EndUser, User: u})
	}
	for _, r := range routes {
		for _, id := range front {
			for _, t := range targets(id, r) {
				cases = append(cases, Case{Identity: id, Route: r, Target: t, Want: Expect(topo, id, r, t)})
			}
		}
	}
	for _, caller := range topo.Workloads {
		for _, r := range directRoutes(topo, routes) {
			id := Identity{Kind: Workload, Workload: caller}
			t := Target{Relation: NoTarget}
			if r.Resource != NoResource {
				// A workload has no resources of its own; name one of the service's tenant.
				t = pick(r.Resource, func(owner demo.User) bool { return owner.Tenant == r.Tenant })
				t.Relation = SameTenantOther
			}
			cases = append(cases, Case{Identity: id, Route: r, Target: t, Direct: true, Want: Expect(topo, id, r, t)})
		}
	}
	return cases
}

// directRoutes is what a workload can knock on: the diagnostic route of every tenant
// service, and every banking route on the service that implements it.
func directRoutes(topo *topology.Topology, routes []Route) []Route {
	var out []Route
	for _, w := range topo.Workloads {
		if w.Tenant == "" {
			continue
		}
		out = append(out, Route{Tenant: w.Tenant, Method: "GET", Path: "/internal/whoami", Service: w.Name,
			Permission: "whoami", WorkloadOnly: true, Live: true})
	}
	for _, r := range routes {
		if !r.WorkloadOnly {
			out = append(out, r)
		}
	}
	return out
}

// targets picks, for a route with a resource, one target of each relation the identity has:
// its own resource, another user's of the same tenant, and another tenant's. A relation is
// left out only when no such demo resource exists (staff own no accounts; bank-a has one
// account holder), and the matrix says so.
func targets(id Identity, r Route) []Target {
	if r.Resource == NoResource {
		return []Target{{Relation: NoTarget}}
	}
	if id.Kind != EndUser {
		// Anonymous: the edge refuses before any resource matters; one target per tenant
		// relation is still named so the body check covers both.
		t := pick(r.Resource, func(u demo.User) bool { return u.Tenant == r.Tenant })
		t.Relation = SameTenantOther
		o := pick(r.Resource, func(u demo.User) bool { return u.Tenant != r.Tenant })
		o.Relation = OtherTenant
		return []Target{t, o}
	}
	me := id.User
	var out []Target
	for _, rel := range []Relation{Own, SameTenantOther, OtherTenant} {
		match := func(owner demo.User) bool {
			switch rel {
			case Own:
				return owner.Username == me.Username
			case SameTenantOther:
				return owner.Tenant == me.Tenant && owner.Username != me.Username
			}
			return owner.Tenant != me.Tenant
		}
		t := pick(r.Resource, match)
		if t.ID == "" {
			continue
		}
		t.Relation = rel
		out = append(out, t)
	}
	return out
}

// pick returns the first demo resource of kind whose owner matches, preferring customers
// (the interesting victims), or a zero Target.
func pick(kind ResourceKind, match func(owner demo.User) bool) Target {
	users := demo.Users()
	slices.SortStableFunc(users, func(a, b demo.User) int {
		if (a.Role == demo.RoleCustomer) == (b.Role == demo.RoleCustomer) {
			return 0
		}
		if a.Role == demo.RoleCustomer {
			return -1
		}
		return 1
	})
	for _, u := range users {
		if !match(u) {
			continue
		}
		switch kind {
		case UserResource:
			return Target{Kind: kind, ID: u.ID.String(), Owner: u.Username, Tenant: u.Tenant}
		case AccountResource:
			for _, a := range demo.Accounts() {
				if a.Owner == u.Username {
					return Target{Kind: kind, ID: a.ID.String(), Owner: u.Username, Tenant: u.Tenant}
				}
			}
		case PaymentResource:
			// A customer with an account pays once before the cases run; the ID is filled in
			// then, so generated cases (and the matrix) stay deterministic.
			for _, a := range demo.Accounts() {
				if a.Owner == u.Username && u.Role == demo.RoleCustomer && hasPayments(u.Tenant) {
					return Target{Kind: kind, ID: paymentPlaceholder + u.Username, Owner: u.Username, Tenant: u.Tenant}
				}
			}
		default:
			panic(fmt.Sprintf("e2e: no targets for resource kind %q", kind))
		}
	}
	return Target{}
}

// paymentPlaceholder prefixes the ID of a payment target until the run knows the real one.
const paymentPlaceholder = "payment-of:"

// hasPayments reports whether the tenant runs a payment service, so its customers can pay.
func hasPayments(tenant string) bool {
	_, ok := topology.Default().Workload(tenant + "/payment")
	return ok
}
