package authz

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// TestDecisionCacheAgreesWithEvaluation checks that a memoised decision is the decision
// evaluation gives, for allows and for each kind of deny, on first sight and on repeat. The
// memo serves OPA's evaluation of the full policy; the compiled residual needs none.
func TestDecisionCacheAgreesWithEvaluation(t *testing.T) {
	cached := newTestEngine(t, "bank-a/account", WithoutResidual())
	uncached := newTestEngine(t, "bank-a/account", WithoutResidual(), WithoutDecisionCache())
	if fast := newTestEngine(t, "bank-a/account"); fast.cache != nil || fast.fast == nil {
		t.Fatalf("default engine: memo=%v residual=%v (%v), want the residual without a memo", fast.cache != nil, fast.fast != nil, fast.fastErr)
	}
	if cached.cache == nil || uncached.cache != nil {
		t.Fatalf("cache wiring: cached=%v uncached=%v", cached.cache != nil, uncached.cache != nil)
	}
	before := len(cached.cache.m) // the start-up self-test's samples
	base := typicalInput(t)
	otherTenant := base
	otherTenant.Resource = &Resource{Owner: spiffeid.RequireFromString("spiffe://bank-b/user/bob"), Tenant: "bank-b"}
	neighbour := base
	neighbour.Resource = &Resource{Owner: spiffeid.RequireFromString("spiffe://bank-a/user/carol"), Tenant: "bank-a"}
	money := base
	money.Action = "payments:create"
	for name, in := range map[string]Input{"allow": base, "other tenant": otherTenant, "neighbour": neighbour, "money": money} {
		want := uncached.Decide(t.Context(), in)
		for round := 0; round < 2; round++ {
			if diff := cmp.Diff(want, cached.Decide(t.Context(), in)); diff != "" {
				t.Errorf("%s round %d: Decide() mismatch (-want +got):\n%s", name, round, diff)
			}
		}
	}
	if n := len(cached.cache.m) - before; n != 4 {
		t.Errorf("cache gained %d decisions, want 4 distinct inputs", n)
	}
}

func TestNondeterministicPolicyIsNotMemoised(t *testing.T) {
	for _, tc := range []struct {
		name, src string
		want      bool
	}{
		{"pure", `package p
allow if input.a == 1`, true},
		{"reads the clock", `package p
allow if time.now_ns() > 0`, false},
		{"calls out", `package p
allow if http.send({"method": "GET", "url": "http://x"}).status_code == 200`, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := ast.ParseModuleWithOpts("p.rego", tc.src, ast.ParserOptions{RegoVersion: ast.RegoV1})
			if err != nil {
				t.Fatal(err)
			}
			if got, _ := deterministic(map[string]*ast.Module{"p.rego": m}); got != tc.want {
				t.Errorf("deterministic() = %v, want %v", got, tc.want)
			}
		})
	}
}
