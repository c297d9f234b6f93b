package authz

import (
	"context"
	"testing"

	"github.com/open-policy-agent/opa/v1/profiler"
	"github.com/open-policy-agent/opa/v1/rego"
)

func BenchmarkZZInput(b *testing.B) {
	e := newTestEngine(b, "bank-a/account")
	in := typicalInput(b)
	b.ReportAllocs()
	for b.Loop() {
		_ = in.value(e.terms)
	}
}

func TestZZProfile(t *testing.T) {
	e := newTestEngine(t, "bank-a/account")
	in := typicalInput(t)
	p := profiler.New()
	for i := 0; i < 2000; i++ {
		if _, err := e.query.Eval(context.Background(), rego.EvalParsedInput(in.value(e.terms)), rego.EvalQueryTracer(p)); err != nil {
			t.Fatal(err)
		}
	}
	for _, r := range p.ReportTopNResults(12, []string{"total_time_ns"}) {
		t.Logf("%8.1fus  evals=%d  %s", float64(r.ExprTimeNs)/2000/1000, r.NumEval/2000, r.Location)
	}
}
