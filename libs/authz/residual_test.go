package authz

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"slices"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/google/go-cmp/cmp"
	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/storage/inmem"

	"github.com/ztbank/ztbank/libs/topology"
)

// residualPolicy builds the residual policy as Rego text (the same partial evaluation as
// compileResidual: each condition of the decision chain against the engine's fixed data,
// the chain kept in order) and prepares it for OPA's own evaluator. Benchmarks use it to
// show what evaluating the residual with OPA costs, the alternative ADR 0980 rejects.
func residualPolicy(ctx context.Context, e *Engine) (rego.PreparedEvalQuery, string, error) {
	var chain, def *ast.Rule
	var modules []*ast.Module
	for _, name := range slices.Sorted(maps.Keys(e.policy.modules)) {
		m := e.policy.modules[name]
		modules = append(modules, m)
		if m.Package.Path.String() != "data.ztbank.authz" {
			continue
		}
		for _, r := range m.Rules {
			if r.Head.Name.String() == "decision" {
				if r.Default {
					def = r
				} else {
					chain = r
				}
			}
		}
	}
	if chain == nil || def == nil {
		return rego.PreparedEvalQuery{}, "", fmt.Errorf("%s has no default and chained decision rule", Query)
	}
	store := inmem.NewFromObjectWithOpts(e.data, inmem.OptReturnASTValuesOnRead(true))
	var text strings.Builder
	text.WriteString("package ztbank.authz\n\n" + def.String() + "\n")
	var support []*ast.Module
	var decision strings.Builder
	i := 0
	for cur := chain; cur != nil; cur, i = cur.Else, i+1 {
		pq, err := partialCondition(ctx, cur.Body, i, store, modules)
		if err != nil {
			return rego.PreparedEvalQuery{}, "", fmt.Errorf("partially evaluate condition %d: %w", i, err)
		}
		for _, q := range pq.Queries {
			fmt.Fprintf(&text, "__c%d if { %s }\n", i, q)
		}
		support = append(support, pq.Support...)
		if i == 0 {
			fmt.Fprintf(&decision, "decision := %s if { __c%d }", cur.Head.Value, i)
		} else {
			fmt.Fprintf(&decision, " else := %s if { __c%d }", cur.Head.Value, i)
		}
	}
	text.WriteString(decision.String() + "\n")
	sources := []string{text.String()}
	for _, m := range support {
		sources = append(sources, m.String())
	}
	opts := []func(*rego.Rego){rego.Query(Query), rego.Store(store), rego.StoreReadAST(true), rego.SetRegoVersion(ast.RegoV1)}
	for j, src := range sources {
		m, err := ast.ParseModuleWithOpts(fmt.Sprintf("residual%d.rego", j), src, ast.ParserOptions{RegoVersion: ast.RegoV1})
		if err != nil {
			return rego.PreparedEvalQuery{}, "", fmt.Errorf("residual module %d does not parse: %w\n%s", j, err, src)
		}
		opts = append(opts, rego.ParsedModule(m))
	}
	prepared, err := rego.New(opts...).PrepareForEval(ctx)
	if err != nil {
		return rego.PreparedEvalQuery{}, "", fmt.Errorf("prepare residual: %w\n%s", err, strings.Join(sources, "\n"))
	}
	return prepared, strings.Join(sources, "\n"), nil
}

// residualEngine is e evaluating the residual policy with OPA, without memo or compiled
// residual, so every decision runs OPA on the residual.
func residualEngine(t testing.TB, e *Engine) *Engine {
	t.Helper()
	pq, _, err := residualPolicy(t.Context(), e)
	if err != nil {
		t.Fatalf("residual policy for %s: %v", e.svc.Workload, err)
	}
	r := *e
	r.query, r.cache, r.fast = pq, nil, nil
	return &r
}

// TestResidualPolicyDecidesAsFullPolicy proves the residual is the same policy: for every
// banking workload the compiled residual (what services run) and OPA's evaluation of the
// residual pass the start-up self-test, and over a generated set of inputs that reaches
// every outcome they return exactly the decisions of OPA evaluating the full policy.
func TestResidualPolicyDecidesAsFullPolicy(t *testing.T) {
	n := 600
	if testing.Short() {
		n = 200
	}
	topo := topology.Default()
	seen := map[string]int{}
	for i, sc := range services {
		t.Run(sc.workload, func(t *testing.T) {
			full := newTestEngine(t, sc.workload, WithoutResidual(), WithoutDecisionCache())
			compiled := newTestEngine(t, sc.workload)
			if compiled.fast == nil {
				t.Fatalf("the embedded policy did not compile to a residual: %v", compiled.fastErr)
			}
			opaResidual := residualEngine(t, full)
			for name, e := range map[string]*Engine{"compiled residual": compiled, "OPA on the residual": opaResidual} {
				if err := e.selfTest(t.Context(), topo); err != nil {
					t.Fatalf("self-test on the %s: %v", name, err)
				}
			}
			for _, in := range sampledInputs(t, full, topo, sc.other, n, uint64(i+1)) {
				want := full.Decide(t.Context(), in)
				if diff := cmp.Diff(want, compiled.Decide(t.Context(), in)); diff != "" {
					t.Errorf("compiled residual differs for %+v (-full +residual):\n%s", in, diff)
				}
				if diff := cmp.Diff(want, opaResidual.Decide(t.Context(), in)); diff != "" {
					t.Errorf("OPA on the residual differs for %+v (-full +residual):\n%s", in, diff)
				}
				seen[want.Reason]++
			}
		})
	}
	// The generated set must reach every outcome, or agreement would prove little.
	for _, reason := range []string{"allowed", "not_owner", "tenant_mismatch", "role_not_permitted",
		"workload_not_allowed", "unknown_workload", "unknown_permission", "user_required"} {
		if seen[reason] == 0 {
			t.Errorf("no generated input was decided %q; outcomes seen: %v", reason, seen)
		}
	}
}

// TestInputLookupMatchesInputDocument keeps Input.lookup, which the compiled residual reads,
// in step with the document OPA sees (Input.value): same members, same values, same
// omissions, for every path the policy could name.
func TestInputLookupMatchesInputDocument(t *testing.T) {
	e := newTestEngine(t, "bank-a/account")
	paths := [][]string{{"caller"}, {"action"}, {"user"}, {"user", "id"}, {"user", "tenant"}, {"user", "roles"},
		{"user", "name"}, {"route", "method"}, {"route", "pattern"}, {"route", "from"}, {"route", "workload_only"},
		{"resource"}, {"resource", "tenant"}, {"resource", "owner"}, {"resource", "kind"}, {"resource", "id"},
		{"resource", "owner", "x"}, {"nothing"}, {"caller", "x"}}
	for _, in := range sampledInputs(t, e, topology.Default(), "bank-b", 300, 7) {
		doc, err := e.InputDocument(in)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range paths {
			want, wantOK := jsonAt(doc, p)
			got, gotOK := in.lookup(p)
			if got.kind == vObject {
				_, wantObj := want.(map[string]any)
				if !wantObj {
					t.Errorf("input.%s: lookup says object, document has %v", strings.Join(p, "."), want)
				}
				continue
			}
			if wantOK != gotOK || wantOK && cmp.Diff(want, toJSON(got)) != "" {
				t.Errorf("input.%s of %+v: lookup = %v (%v), document = %v (%v)", strings.Join(p, "."), in, got, gotOK, want, wantOK)
			}
		}
	}
}

func jsonAt(doc any, path []string) (any, bool) {
	for _, k := range path {
		m, ok := doc.(map[string]any)
		if !ok {
			return nil, false
		}
		if doc, ok = m[k]; !ok {
			return nil, false
		}
	}
	return doc, true
}

func toJSON(v val) any {
	switch v.kind {
	case vString:
		return v.s
	case vBool:
		return v.b
	case vInt:
		return v.n
	case vStrings:
		out := make([]any, len(v.ss))
		for i, s := range v.ss {
			out[i] = s
		}
		return out
	}
	return nil
}

// TestPolicyOutsideTheFragmentFallsBackToOPA: a policy whose residual the compiler does not
// cover still starts and decides, with OPA evaluating the full policy.
func TestPolicyOutsideTheFragmentFallsBackToOPA(t *testing.T) {
	src, err := fs.ReadFile(embedded, "authz.rego")
	if err != nil {
		t.Fatal(err)
	}
	data, _ := fs.ReadFile(embedded, DataFile)
	for _, tc := range []struct{ name, from, to string }{
		// Same decisions, but the tenant check goes through sprintf, which the fragment lacks.
		{"unsupported built-in", "input.user.tenant == service.tenant", `sprintf("%s", [input.user.tenant]) == service.tenant`},
		// A route parameter: a path Input.lookup does not resolve. Always true here.
		{"route parameter", "input.user.tenant == service.tenant", `input.user.tenant == service.tenant
	not input.route.params.selftest_never`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			changed := strings.Replace(string(src), tc.from, tc.to, 1)
			if changed == string(src) {
				t.Fatal("the tenant check moved; update this test")
			}
			e := newTestEngine(t, "bank-a/account", WithPolicy(fstest.MapFS{
				"authz.rego": {Data: []byte(changed)}, DataFile: {Data: data}}))
			if e.fast != nil || !errors.Is(e.fastErr, errUnsupported) {
				t.Fatalf("residual = %v, error %v; want a fallback to OPA", e.fast != nil, e.fastErr)
			}
			if d := e.Decide(t.Context(), typicalInput(t)); d != allow {
				t.Errorf("fallback decision = %+v, want %+v", d, allow)
			}
		})
	}
}

// TestResidualOfBrokenPoliciesIsFaithful: the isolation suite runs services on policies
// with a rule cut out, to prove it notices. The compiled residual must reproduce those
// policies too, leaks included, or the suite would test the compiler instead of the policy.
func TestResidualOfBrokenPoliciesIsFaithful(t *testing.T) {
	src, err := fs.ReadFile(embedded, "authz.rego")
	if err != nil {
		t.Fatal(err)
	}
	topo := topology.Default()
	for _, cut := range []struct{ name, remove string }{
		{"without the tenant rule", `} else := {"allow": false, "reason": "tenant_mismatch"} if {
	has_user
	not user_in_service_tenant
} else := {"allow": false, "reason": "tenant_mismatch"} if {
	not resource_in_service_tenant
`},
		{"without the ownership rule", `} else := {"allow": false, "reason": "not_owner"} if {
	not may_act_on_resource
`},
		{"without the workload allowlist", `} else := {"allow": false, "reason": "workload_not_allowed"} if {
	not caller_may_call_service
`},
	} {
		t.Run(cut.name, func(t *testing.T) {
			broken := strings.Replace(string(src), cut.remove, "", 1)
			if broken == string(src) {
				t.Fatal("the rule to cut moved; update this test")
			}
			policy := WithPolicy(policyWith(t, map[string]*string{"authz.rego": &broken}))
			sc := services[0]
			full := newTestEngine(t, sc.workload, policy, WithoutSelfTest(), WithoutResidual(), WithoutDecisionCache())
			compiled := newTestEngine(t, sc.workload, policy, WithoutSelfTest())
			if compiled.fast == nil {
				t.Fatalf("no compiled residual: %v", compiled.fastErr)
			}
			real, leaks := newTestEngine(t, sc.workload), 0
			for _, in := range sampledInputs(t, full, topo, sc.other, 400, 99) {
				want := full.Decide(t.Context(), in)
				if diff := cmp.Diff(want, compiled.Decide(t.Context(), in)); diff != "" {
					t.Errorf("compiled residual differs for %+v (-full +residual):\n%s", in, diff)
				}
				if want.Allow && real.Decide(t.Context(), in) != want {
					leaks++
				}
			}
			if leaks == 0 {
				t.Errorf("the cut policy allowed nothing the real one refuses: the sample does not reach the cut rule")
			}
		})
	}
}

// TestResidualTriesCheapBodiesFirst: every rule of the compiled residual, support rules
// included, tries its bodies cheapest first, so the common cases (the owner comparison of a
// customer reading her own account, say) stop evaluation early. The order never changes a
// decision; TestResidualPolicyDecidesAsFullPolicy proves that.
func TestResidualTriesCheapBodiesFirst(t *testing.T) {
	e := newTestEngine(t, "bank-a/account")
	if e.fast == nil {
		t.Fatalf("no compiled residual: %v", e.fastErr)
	}
	seen := map[*rule]bool{}
	var walk func(r *rule)
	walk = func(r *rule) {
		if seen[r] {
			return
		}
		seen[r] = true
		for i, b := range r.bodies {
			if i > 0 && bodyCost(r.bodies[i-1]) > bodyCost(b) {
				t.Errorf("body %d (cost %d) comes after a body of cost %d", i, bodyCost(b), bodyCost(r.bodies[i-1]))
			}
			for _, x := range b {
				if x.op == opRule {
					walk(x.rule)
				}
			}
		}
	}
	for _, s := range e.fast.steps {
		walk(s.cond)
	}
	if len(seen) < len(e.fast.steps)+3 {
		t.Errorf("walked %d rules; the residual of the account service has support rules too", len(seen))
	}
}
