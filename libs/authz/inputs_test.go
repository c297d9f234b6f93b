package authz

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/ztbank/ztbank/libs/topology"
)

// realisticInputs returns n decisions as a service sees them in traffic: its usual callers,
// its read and write routes, many distinct customers and a few staff, and a resource ID
// that differs on every request, so an exact-input memo rarely hits. About one in ten is
// a deny (a neighbour's resource, another tenant's, staff moving money). The seed makes a
// run repeatable.
func realisticInputs(t testing.TB, sc serviceCase, n int, seed uint64) []Input {
	t.Helper()
	next := newTraffic(t, sc, seed)
	out := make([]Input, n)
	for i := range out {
		out[i] = next()
	}
	return out
}

// newTraffic returns an endless generator of realisticInputs' decisions.
func newTraffic(t testing.TB, sc serviceCase, seed uint64) func() Input {
	t.Helper()
	topo := topology.Default()
	rnd := rand.New(rand.NewPCG(seed, seed^0x5eed))
	callers := []spiffeid.ID{workloadID(t, sc.caller)}
	for _, id := range topo.AllowedCallers(sc.workload) {
		if id != callers[0] {
			callers = append(callers, id)
		}
	}
	return func() Input {
		r := sc.read
		if rnd.IntN(4) == 0 {
			r = sc.write
		}
		caller := callers[0]
		if len(r.from) > 0 || rnd.IntN(5) > 0 {
			caller = workloadID(t, firstOr(r.from, sc.caller))
		} else {
			caller = callers[rnd.IntN(len(callers))]
		}
		user, roles := userID(sc.tenant, fmt.Sprintf("c-%06d", rnd.IntN(100000))), []string{RoleCustomer}
		if rnd.IntN(20) == 0 {
			user, roles = userID(sc.tenant, fmt.Sprintf("s-%03d", rnd.IntN(50))), []string{RoleStaff}
		}
		id := fmt.Sprintf("%016x", rnd.Uint64())
		owner, tenant := user, sc.tenant
		switch rnd.IntN(20) {
		case 0:
			owner = userID(sc.tenant, fmt.Sprintf("c-%06d", rnd.IntN(100000)))
		case 1:
			owner, tenant = userID(sc.other, fmt.Sprintf("c-%06d", rnd.IntN(100000))), sc.other
		}
		return Input{Caller: caller, User: user, Tenant: sc.tenant, Roles: roles, Action: r.perm,
			Method: r.method, Route: r.pattern, Params: map[string]string{"id": id}, From: r.from,
			Resource: &Resource{Kind: "resource", ID: id, Owner: owner, Tenant: tenant}}
	}
}

func firstOr(ss []string, def string) string {
	if len(ss) > 0 {
		return ss[0]
	}
	return def
}

// sampledInputs draws n inputs from the cross product of every dimension the policy reads,
// each over its allowed, denied and absent values: every workload of the topology plus an
// unknown one and none; every permission plus an unknown one; route restrictions naming the
// caller, another workload, or nobody; workload-only or not; no user, a user of this tenant
// or of the other, claiming either tenant; any subset of roles; no resource, an own one, a
// neighbour's and another tenant's.
func sampledInputs(t testing.TB, e *Engine, topo *topology.Topology, other string, n int, seed uint64) []Input {
	t.Helper()
	rnd := rand.New(rand.NewPCG(seed, ^seed))
	tenant := e.svc.Tenant
	callers := []spiffeid.ID{{}, spiffeid.RequireFromString("spiffe://ztbank.local/ns/" + tenant + "/sa/intruder")}
	for _, w := range topo.Workloads {
		callers = append(callers, w.ID)
	}
	actions := append(e.Permissions(), "accounts:delete", "")
	own, neighbour, foreigner := userID(tenant, "alice"), userID(tenant, "carol"), userID(other, "bob")
	users := []spiffeid.ID{{}, own, foreigner}
	roleSets := [][]string{nil, {RoleCustomer}, {RoleStaff}, {RoleStaff, RoleCustomer}, {"auditor"}}
	resources := []*Resource{nil,
		{Kind: "k", ID: "1", Owner: own, Tenant: tenant},
		{Kind: "k", ID: "2", Owner: neighbour, Tenant: tenant},
		{Kind: "k", ID: "3", Owner: foreigner, Tenant: other},
		{Kind: "k", ID: "4", Tenant: tenant}, // no owner: a tenant-wide resource
	}
	pick := func(n int) int { return rnd.IntN(n) }
	out := make([]Input, n)
	for i := range out {
		caller := callers[pick(len(callers))]
		var from []string
		switch pick(3) {
		case 1:
			if w, ok := topo.WorkloadByID(caller); ok {
				from = []string{w.Name}
			}
		case 2:
			from = []string{e.svc.Workload}
		}
		user := users[pick(len(users))]
		claim := []string{tenant, other, ""}[pick(3)]
		out[i] = Input{Caller: caller, User: user, Tenant: claim, Roles: roleSets[pick(len(roleSets))],
			Action: actions[pick(len(actions))], Method: "GET", Route: "/r/{id}", Params: map[string]string{"id": "1"},
			From: from, WorkloadOnly: pick(4) == 0, Resource: resources[pick(len(resources))]}
	}
	return out
}
