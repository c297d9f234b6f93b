package e2e

import (
	"fmt"
	"slices"

	"github.com/ztbank/ztbank/devkit/demo"
	"github.com/ztbank/ztbank/libs/topology"
)

// Case is one generated check.
type Case struct {
	Identity Identity
	// Route is the route as the request sends it: through the edge (tenant-relative path),
	// or, for direct cases, the service route's own pattern on Route.Service.
	Route  Route
	Target Target
	Want   Expectation
	// Direct cases skip the edge and call Route.Service over mTLS with the identity's SVID.
	Direct bool
	// Served is the service route a direct case calls.
	Served *ServiceRoute
	// Call, on a direct case, sends Call.User's genuine internal JWT, as the calling workload
	// would forward it; nil sends none.
	Call *UserCall
	// Edge, on an edge case, is the call on the edge's own public routes; EdgeRoute is the
	// route it exercises.
	Edge      *EdgeCall
	EdgeRoute *EdgeRoute
}

// Name is unique across the generated cases and stable between runs.
func (c Case) Name() string {
	n := c.Identity.Name() + " " + c.Route.Name()
	if c.Edge != nil {
		n = c.Identity.Name() + " → edge " + c.Edge.Method + " " + c.Edge.Path
		if c.Edge.ClientSVID != "" && c.Edge.User != "" {
			n += " as " + c.Edge.User
		}
		return n
	}
	if c.Direct {
		n = c.Identity.Name() + " → " + c.Route.Service + " " + c.Route.Method + " " + c.Route.Path
		if c.Call != nil {
			n += " as " + c.Call.User
		}
	}
	if c.Target.Relation != NoTarget {
		n += " [" + string(c.Target.Relation) + " " + string(c.Target.Kind) + "]"
	}
	return n
}

// Generate builds every case from the topology, the demo users and the two route tables:
// each demo user and an anonymous caller on each front-door route through the edge, with a
// target of each relation where the route names a resource; each workload's SVID calling
// every service route directly without a user token; and each workload that gets past a
// service's handshake calling its user routes with a user's internal JWT.
func Generate(topo *topology.Topology, routes []Route, served []ServiceRoute, edge []EdgeRoute) []Case {
	return generate(topo, routes, served, edge, workloadCalls)
}

func generate(topo *topology.Topology, routes []Route, served []ServiceRoute, edge []EdgeRoute, calls map[string][]string) []Case {
	var cases []Case
	for i := range edge {
		er := &edge[i]
		for _, call := range er.Calls(topo, calls) {
			id := Identity{Kind: Anonymous}
			switch {
			case call.ClientSVID != "":
				w, _ := topo.Workload(call.ClientSVID)
				id = Identity{Kind: Workload, Workload: w}
			case call.User != "":
				u, _ := demo.UserByName(call.User)
				id = Identity{Kind: EndUser, User: u}
			}
			cases = append(cases, Case{Identity: id, Route: Route{Method: call.Method, Path: call.Path, Service: "edge", Live: true},
				Target: Target{Relation: NoTarget}, Edge: &call, EdgeRoute: er, Want: call.Want})
		}
	}
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
		id := Identity{Kind: Workload, Workload: caller}
		for i := range served {
			sr := &served[i]
			w, _ := topo.Workload(sr.Workload)
			route := Route{Tenant: w.Tenant, Method: sr.Method, Path: sr.Pattern, Service: sr.Workload,
				WorkloadOnly: sr.WorkloadOnly, Live: true}
			t := Target{Relation: NoTarget, ID: sr.Sample}
			if len(sr.Calls) > 0 && sr.Calls[0].Kind != NoResource {
				// Name a real resource of the tenant in the path, so the refusal is not about
				// a malformed ID.
				t = userTarget(sr.Calls[0])
				t.Relation = NoTarget
				route.Resource = t.Kind
			}
			cases = append(cases, Case{Identity: id, Route: route, Target: t, Direct: true, Served: sr,
				Want: ExpectDirect(calls, caller.Name, *sr, nil)})
			if !sr.AnyMember && !mayCall(calls, caller.Name, sr.Workload) {
				continue // the handshake refuses before any token is read
			}
			for j := range sr.Calls {
				call := &sr.Calls[j]
				r := route
				r.Resource, r.Body = call.Kind, call.Body
				cases = append(cases, Case{Identity: id, Route: r, Target: userTarget(*call), Direct: true, Served: sr,
					Call: call, Want: ExpectDirect(calls, caller.Name, *sr, call)})
			}
		}
	}
	return cases
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
