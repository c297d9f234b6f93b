package authz

import (
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// typicalInput is a customer reading her own account through the gateway: the most common
// decision on the platform, with a resource and one path parameter.
func typicalInput(b testing.TB) Input {
	alice := userID("bank-a", "alice")
	return Input{
		Caller: workloadID(b, "bank-a/gateway"), User: alice, Tenant: "bank-a", Roles: []string{"customer"},
		Action: "accounts:read", Method: "GET", Route: "/v1/accounts/{accountID}",
		Params:   map[string]string{"accountID": "acc-42"},
		Resource: &Resource{Kind: "account", ID: "acc-42", Owner: alice, Tenant: "bank-a"},
	}
}

// BenchmarkDecide measures one decision as services make it (the compiled residual policy
// of ADR 0980) for a typical input. The policy is prepared once, outside the timed loop.
func BenchmarkDecide(b *testing.B) { benchmarkTypical(b) }

// benchmarkTypical times the typical input's decision by an engine with opts.
func benchmarkTypical(b *testing.B, opts ...Option) {
	e := newTestEngine(b, "bank-a/account", opts...)
	in := typicalInput(b)
	if d := e.Decide(b.Context(), in); !d.Allow {
		b.Fatalf("typical input denied: %+v", d)
	}
	b.ReportAllocs()
	for b.Loop() {
		e.Decide(b.Context(), in)
	}
}

// BenchmarkDecideDeny measures a cross-tenant deny as services decide it.
func BenchmarkDecideDeny(b *testing.B) {
	e := newTestEngine(b, "bank-a/account", WithoutDecisionCache())
	in := typicalInput(b)
	in.Resource = &Resource{Owner: spiffeid.RequireFromString("spiffe://bank-b/user/bob"), Tenant: "bank-b"}
	if d := e.Decide(b.Context(), in); d.Reason != "tenant_mismatch" {
		b.Fatalf("cross-tenant input: %+v", d)
	}
	b.ReportAllocs()
	for b.Loop() {
		e.Decide(b.Context(), in)
	}
}

// BenchmarkDecideParallel shows the engine is usable from many goroutines at once.
func BenchmarkDecideParallel(b *testing.B) {
	e := newTestEngine(b, "bank-a/account")
	in := typicalInput(b)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			e.Decide(b.Context(), in)
		}
	})
}

// BenchmarkDecideUncached measures OPA evaluating the full prepared policy without the
// decision memo: what every decision cost before ADR 0980, and still costs for a policy
// outside the residual's fragment.
func BenchmarkDecideUncached(b *testing.B) {
	benchmarkTypical(b, WithoutResidual(), WithoutDecisionCache())
}
