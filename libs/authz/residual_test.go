package authz

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/storage/inmem"

	"github.com/ztbank/ztbank/libs/topology"
)

// residualPolicy partially evaluates the engine's policy against the engine's own data (the
// permission table, the topology and the service itself, all fixed after New) with the
// whole input unknown, and returns the residual prepared for evaluation with its Rego text.
//
// OPA does not partially evaluate ordered rules (`else`): a query on the decision chain
// comes back unchanged. So each condition of the chain is partially evaluated on its own,
// and the residual is the same chain, in the same order, over the residual conditions. A
// condition with no residual query can never hold and is left undefined; everything the
// conditions read from data is folded into constants or enumerations by OPA.
//
// It is test code on purpose: ADR 0980 records that on this machine the residual is not
// faster than the prepared full policy (OPA's per-expression evaluation cost dominates, not
// its data lookups), so the engine does not use it; this keeps the measurement repeatable.
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
		opts := []func(*rego.Rego){
			rego.ParsedQuery(cur.Body.Copy()), rego.Package("ztbank.authz"),
			rego.Store(store), rego.StoreReadAST(true), rego.SetRegoVersion(ast.RegoV1),
			rego.Unknowns([]string{"input"}), rego.PartialNamespace(fmt.Sprintf("residual_c%d", i)),
		}
		for _, m := range modules {
			opts = append(opts, rego.ParsedModule(m))
		}
		pq, err := rego.New(opts...).Partial(ctx)
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

// residualEngine is e evaluating the residual policy instead of the full one, without the
// memo, so every decision runs the residual.
func residualEngine(t testing.TB, e *Engine) *Engine {
	t.Helper()
	pq, _, err := residualPolicy(t.Context(), e)
	if err != nil {
		t.Fatalf("residual policy for %s: %v", e.svc.Workload, err)
	}
	r := *e
	r.query, r.cache = pq, nil
	return &r
}

// TestResidualPolicyDecidesAsFullPolicy proves the residual is the same policy: for every
// banking workload it passes the start-up self-test, and over a generated set of inputs
// that reaches every deny reason it returns exactly the full policy's decisions.
func TestResidualPolicyDecidesAsFullPolicy(t *testing.T) {
	n := 600
	if testing.Short() {
		n = 200
	}
	topo := topology.Default()
	seen := map[string]int{}
	for i, sc := range services {
		t.Run(sc.workload, func(t *testing.T) {
			full := newTestEngine(t, sc.workload, WithoutDecisionCache())
			res := residualEngine(t, full)
			if err := res.selfTest(t.Context(), topo); err != nil {
				t.Fatalf("self-test on the residual policy: %v", err)
			}
			for _, in := range sampledInputs(t, full, topo, sc.other, n, uint64(i+1)) {
				want, got := full.Decide(t.Context(), in), res.Decide(t.Context(), in)
				if diff := cmp.Diff(want, got); diff != "" {
					t.Errorf("residual decision differs for %+v (-full +residual):\n%s", in, diff)
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
