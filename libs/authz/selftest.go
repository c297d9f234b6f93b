package authz

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/ztbank/ztbank/libs/topology"
)

// sample is one self-test case: an input and whether the policy must allow it.
type sample struct {
	name  string
	in    Input
	allow bool
}

// selfTest evaluates samples built from this service's place in the topology. Each deny
// sample differs from an allowed one in exactly one respect, so it is refused by exactly one
// rule: a policy that lost that rule (or allows everything) is caught here, before the
// service accepts a connection. The expected reason is not compared, so a swapped policy
// may name its reasons differently.
func (e *Engine) selfTest(ctx context.Context, topo *topology.Topology) error {
	samples, err := e.samples(topo)
	if err != nil {
		return fmt.Errorf("%w: self-test: %w", ErrPolicy, err)
	}
	var failures []string
	for _, s := range samples {
		d, err := e.decide(ctx, s.in)
		switch {
		case err != nil:
			failures = append(failures, fmt.Sprintf("%s: %v", s.name, err))
		case d.Allow != s.allow:
			verb := "denied (" + d.Reason + ")"
			if d.Allow {
				verb = "allowed"
			}
			failures = append(failures, fmt.Sprintf("%s: want %s, policy %s", s.name, outcome(s.allow), verb))
		}
	}
	if len(failures) > 0 {
		return fmt.Errorf("%w: revision %s failed its self-test for %s:\n  %s",
			ErrPolicy, e.revision, e.svc.Workload, strings.Join(failures, "\n  "))
	}
	return nil
}

// checkResidual compares the compiled residual with OPA's evaluation of the full policy on
// every self-test sample, whether or not the self-test itself runs: a disagreement is a
// fault in the compilation, and the service must not start on it.
func (e *Engine) checkResidual(ctx context.Context, topo *topology.Topology) error {
	samples, err := e.samples(topo)
	if err != nil {
		return nil // the self-test reports this when it runs; nothing to compare against
	}
	for _, s := range samples {
		full, err := e.evaluate(ctx, s.in.value(e.terms))
		if err != nil {
			return fmt.Errorf("%w: residual check %q: %w", ErrPolicy, s.name, err)
		}
		if fast := e.fast.decide(&s.in); fast != full {
			return fmt.Errorf("%w: compiled residual decides %+v for self-test sample %q, the full policy %+v",
				ErrPolicy, fast, s.name, full)
		}
	}
	return nil
}

func outcome(allow bool) string {
	if allow {
		return "allow"
	}
	return "deny"
}

// samples derives the self-test cases for this service. They need one workload the
// topology lets call the service, a read permission both roles hold and a permission that
// moves money.
func (e *Engine) samples(topo *topology.Topology) ([]sample, error) {
	callers := topo.AllowedCallers(e.svc.Workload)
	if len(callers) == 0 {
		return nil, fmt.Errorf("no workload may call %s in the topology, so nothing could ever be allowed", e.svc.Workload)
	}
	allowed := callers[0]
	var outsider spiffeid.ID // a real workload that may not call this service
	for _, w := range topo.Workloads {
		if !slices.Contains(callers, w.ID) {
			outsider = w.ID
			break
		}
	}
	outsiderName := ""
	if w, ok := topo.WorkloadByID(outsider); ok {
		outsiderName = w.Name
	}
	allowedName, _ := topo.WorkloadByID(allowed)

	read, money := e.samplePermissions()
	if read == "" || money == "" {
		return nil, errors.New("the permission table needs a permission both customer and staff hold and one that moves money")
	}

	tenant := e.svc.Tenant
	other := "selftest-other-tenant"
	for _, t := range topo.Tenants {
		if t.Name != tenant {
			other = t.Name
			break
		}
	}
	user := func(t, id string) spiffeid.ID {
		return spiffeid.RequireFromPath(spiffeid.RequireTrustDomainFromString(t), "/user/"+id)
	}
	customer, neighbour, staff := user(tenant, "selftest-customer"), user(tenant, "selftest-neighbour"), user(tenant, "selftest-staff")
	foreigner := user(other, "selftest-foreigner")
	intruder := spiffeid.RequireFromSegments(topo.TrustDomain, "ns", tenant, "sa", "selftest-intruder")

	own := &Resource{Kind: "selftest", ID: "1", Owner: customer, Tenant: tenant}
	base := func(perm string, by spiffeid.ID, roles ...string) Input {
		return Input{Caller: allowed, User: by, Tenant: tenant, Roles: roles, Action: perm,
			Method: "GET", Route: "/selftest/{id}", Params: map[string]string{"id": "1"}, Resource: own}
	}
	with := func(in Input, f func(*Input)) Input { f(&in); return in }

	ss := []sample{
		{"customer reads own resource", base(read, customer, "customer"), true},
		{"staff reads a customer's resource", base(read, staff, "staff"), true},
		{"customer moves own money", base(money, customer, "customer"), true},
		{"customer reads a neighbour's resource", with(base(read, customer, "customer"), func(in *Input) {
			in.Resource = &Resource{Owner: neighbour, Tenant: tenant}
		}), false},
		{"staff reads a resource of another tenant", with(base(read, staff, "staff"), func(in *Input) {
			in.Resource = &Resource{Owner: foreigner, Tenant: other}
		}), false},
		{"staff of another tenant reads", with(base(read, foreigner, "staff"), func(in *Input) { in.Tenant = other }), false},
		{"user of another tenant claims this tenant", base(read, foreigner, "staff"), false},
		{"staff moves money", base(money, staff, "staff"), false},
		{"user without a role", base(read, customer), false},
		{"no end user", with(base(read, spiffeid.ID{}), func(in *Input) { in.Tenant = "" }), false},
		{"unknown permission", base("selftest:unknown", customer, "customer"), false},
		{"unknown workload", with(base(read, customer, "customer"), func(in *Input) { in.Caller = intruder }), false},
		{"no workload", with(base(read, customer, "customer"), func(in *Input) { in.Caller = spiffeid.ID{} }), false},
		{"route restricted to another workload", with(base(read, customer, "customer"), func(in *Input) {
			in.From = []string{e.svc.Workload}
		}), false},
		{"route restricted to the caller", with(base(read, customer, "customer"), func(in *Input) {
			in.From = []string{allowedName.Name}
		}), true},
		{"empty input", Input{}, false},
	}
	if !outsider.IsZero() {
		ss = append(ss, sample{"workload " + outsiderName + " the topology does not allow",
			with(base(read, customer, "customer"), func(in *Input) { in.Caller = outsider }), false})
	}
	return ss, nil
}

// samplePermissions picks, from the permission table, a permission both customer and staff
// are granted and one that moves money, so the self-test follows the table rather than
// hard-coding names.
func (e *Engine) samplePermissions() (read, money string) {
	rbac := e.rbac
	roles, _ := rbac["roles"].(map[string]any)
	perms, _ := rbac["permissions"].(map[string]any)
	grants := func(role string) []any {
		r, _ := roles[role].(map[string]any)
		g, _ := r["grants"].([]any)
		return g
	}
	staff := grants("staff")
	for _, name := range e.Permissions() {
		p, _ := perms[name].(map[string]any)
		movesMoney, _ := p["moves_money"].(bool)
		if movesMoney && money == "" && slices.Contains(grants("customer"), any(name)) {
			money = name
		}
		if !movesMoney && read == "" && slices.Contains(grants("customer"), any(name)) && slices.Contains(staff, any(name)) {
			read = name
		}
	}
	return read, money
}
