package e2e

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/ztbank/ztbank/devkit/demo"
	"github.com/ztbank/ztbank/devkit/localspire"
	"github.com/ztbank/ztbank/libs/authz"
	"github.com/ztbank/ztbank/libs/usertoken"
)

// policyEdit removes one rule from a copy of the real policy.
type policyEdit struct {
	name   string
	remove string // exact Rego text deleted from authz.rego
}

var (
	withoutTenantRule = policyEdit{"without the tenant rule", `} else := {"allow": false, "reason": "tenant_mismatch"} if {
	has_user
	not user_in_service_tenant
} else := {"allow": false, "reason": "tenant_mismatch"} if {
	not resource_in_service_tenant
`}
)

// brokenPolicyDir writes libs/authz/policy with edit applied into a new directory and
// fails the test loudly when the edit did not apply, so a reworded policy cannot turn this
// test into one that checks an intact policy.
func brokenPolicyDir(t *testing.T, edit policyEdit) string {
	t.Helper()
	root, err := localspire.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	src := filepath.Join(root, "libs", "authz", "policy")
	rego, err := os.ReadFile(filepath.Join(src, "authz.rego"))
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(rego), edit.remove); n != 1 {
		t.Fatalf("policy %s: the rule text occurs %d times in %s, want 1: update policyEdit to the current policy", edit.name, n, src)
	}
	data, err := os.ReadFile(filepath.Join(src, "data.json"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	broken := strings.Replace(string(rego), edit.remove, "", 1)
	if err := os.WriteFile(filepath.Join(dir, "authz.rego"), []byte(broken), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "data.json"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// policyInput is the decision a service would ask for if a cross-tenant request got past
// the edge and the internal-JWT check (a stolen edge key, a verifier bug): the user and its
// tenant claim as the token carries them, the resource as the handler would load it.
func policyInput(c Case) (svc string, in authz.Input) {
	r := c.Route
	gw := r.Tenant + "/gateway"
	u := c.Identity.User
	uid, _ := usertoken.UserID(u.Tenant, u.ID.String())
	gateway, _ := topo.Workload(gw)
	in = authz.Input{Caller: gateway.ID, User: uid, Tenant: u.Tenant, Roles: []string{u.Role}, Action: r.Permission,
		Method: r.Method, Route: r.Path, From: []string{gw}}
	if c.Target.Relation != NoTarget {
		owner, _ := demo.UserByName(c.Target.Owner)
		oid, _ := usertoken.UserID(c.Target.Tenant, owner.ID.String())
		in.Resource = &authz.Resource{Kind: string(c.Target.Kind), ID: c.Target.ID, Owner: oid, Tenant: c.Target.Tenant}
	}
	return r.Service, in
}

// TestBrokenPolicyIsCaught proves the suite catches what it claims to: with the tenant rule
// cut out of the real policy, the real OPA engine allows cross-tenant decisions that the
// suite's rules say must be refused. Through the running system the same requests are still
// refused by the edge and the internal-JWT audience check (see ADR 0800), so the policy is
// exercised here directly, the one place where it alone stands between a caller and the
// data.
func TestBrokenPolicyIsCaught(t *testing.T) {
	ctx := context.Background()
	broken := brokenPolicyDir(t, withoutTenantRule)
	engines := map[string][2]*authz.Engine{}
	engine := func(svc string) [2]*authz.Engine {
		if e, ok := engines[svc]; ok {
			return e
		}
		w, _ := topo.Workload(svc)
		var pair [2]*authz.Engine
		for i, opts := range [][]authz.Option{nil, {authz.WithPolicy(os.DirFS(broken)), authz.WithoutSelfTest()}} {
			opts = append(opts, authz.WithAuditWriter(io.Discard), authz.WithRegisterer(prometheus.NewRegistry()))
			e, err := authz.New(ctx, authz.Service{Workload: svc, Tenant: w.Tenant, ID: w.ID}, topo, opts...)
			if err != nil {
				t.Fatalf("policy engine for %s: %v", svc, err)
			}
			pair[i] = e
		}
		engines[svc] = pair
		return pair
	}
	var crossTenant, caught []string
	for _, c := range Generate(topo, LiveRoutes(), ServiceRoutes, EdgeRoutes) {
		if c.Direct || c.Edge != nil || c.Identity.Kind != EndUser || c.Route.WorkloadOnly {
			continue
		}
		if c.Identity.User.Tenant == c.Route.Tenant && (c.Target.Relation == NoTarget || c.Target.Tenant == c.Route.Tenant) {
			continue
		}
		if c.Want.Allowed() {
			// Staff listing the accounts of an ID their tenant does not hold: an empty list,
			// no other tenant's data; nothing for the tenant rule to stop.
			continue
		}
		crossTenant = append(crossTenant, c.Name())
		svc, in := policyInput(c)
		e := engine(svc)
		if d := e[0].Decide(ctx, in); d.Allow {
			t.Errorf("%s: the real policy allows it (%s); the suite's rules refuse every cross-tenant case", c.Name(), d.Reason)
		}
		if d := e[1].Decide(ctx, in); d.Allow {
			caught = append(caught, c.Name())
		}
	}
	if len(caught) == 0 {
		t.Fatalf("the policy %s allowed none of %d cross-tenant cases: the suite would not notice the rule missing", withoutTenantRule.name, len(crossTenant))
	}
	t.Logf("policy %s: the suite's rules disagree with the policy on %d of %d cross-tenant cases, e.g. %q",
		withoutTenantRule.name, len(caught), len(crossTenant), caught[:min(3, len(caught))])
}
