package authz

import (
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/ztbank/ztbank/libs/topology"
)

var (
	fuzzEnginesOnce sync.Once
	fuzzEngines     [][2]*Engine // per services entry: OPA on the full policy, compiled residual
)

// FuzzResidualMatchesFullPolicy lets the fuzzer pick every dimension the policy reads
// (service, caller, permission, route restriction, workload-only, user, tenant claim,
// roles, resource) and requires the compiled residual to decide exactly as OPA evaluating
// the full policy.
func FuzzResidualMatchesFullPolicy(f *testing.F) {
	f.Add(uint8(2), uint8(3), uint8(1), uint8(0), false, uint8(1), uint8(0), uint8(1), uint8(1))
	f.Add(uint8(5), uint8(0), uint8(9), uint8(2), true, uint8(0), uint8(2), uint8(3), uint8(3))
	f.Fuzz(func(t *testing.T, svc, caller, action, from uint8, workloadOnly bool, user, claim, roles, resource uint8) {
		fuzzEnginesOnce.Do(func() {
			for _, sc := range services {
				fuzzEngines = append(fuzzEngines, [2]*Engine{
					newTestEngine(t, sc.workload, WithoutResidual(), WithoutDecisionCache()),
					newTestEngine(t, sc.workload),
				})
			}
		})
		i := int(svc) % len(services)
		sc, full, compiled := services[i], fuzzEngines[i][0], fuzzEngines[i][1]
		topo := topology.Default()
		pick := func(n int, b uint8) int { return int(b) % n }

		callers := []spiffeid.ID{{}, spiffeid.RequireFromString("spiffe://ztbank.local/ns/" + sc.tenant + "/sa/intruder")}
		for _, w := range topo.Workloads {
			callers = append(callers, w.ID)
		}
		in := Input{Caller: callers[pick(len(callers), caller)], Method: "GET", Route: "/r/{id}", WorkloadOnly: workloadOnly}
		actions := append(full.Permissions(), "accounts:delete", "")
		in.Action = actions[pick(len(actions), action)]
		switch pick(3, from) {
		case 1:
			if w, ok := topo.WorkloadByID(in.Caller); ok {
				in.From = []string{w.Name}
			}
		case 2:
			in.From = []string{sc.workload}
		}
		own, neighbour, foreigner := userID(sc.tenant, "alice"), userID(sc.tenant, "carol"), userID(sc.other, "bob")
		in.User = []spiffeid.ID{{}, own, foreigner, neighbour}[pick(4, user)]
		in.Tenant = []string{sc.tenant, sc.other, ""}[pick(3, claim)]
		in.Roles = [][]string{nil, {RoleCustomer}, {RoleStaff}, {RoleStaff, RoleCustomer}, {"auditor"}, {}}[pick(6, roles)]
		in.Resource = []*Resource{nil,
			{Kind: "k", ID: "1", Owner: own, Tenant: sc.tenant},
			{Kind: "k", ID: "2", Owner: neighbour, Tenant: sc.tenant},
			{Kind: "k", ID: "3", Owner: foreigner, Tenant: sc.other},
			{Tenant: sc.tenant},
			{Owner: own},
		}[pick(6, resource)]
		if diff := cmp.Diff(full.Decide(t.Context(), in), compiled.Decide(t.Context(), in)); diff != "" {
			t.Errorf("compiled residual differs for %+v (-full +residual):\n%s", in, diff)
		}
	})
}
