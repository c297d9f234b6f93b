package authz

import (
	"slices"
	"testing"
	"time"
)

// BenchmarkDecideLatency reports the distribution of single decisions (p50, p99 in µs) for
// traffic-shaped inputs of the account service: per-request resource IDs, many users, one
// decision in ten a deny. Every iteration decides a new input (generated outside the timed
// section), so the memo sees an input twice only by chance, as in production. Variants: the engine as services run
// it (the compiled residual of ADR 0980, no memo); OPA evaluating the full policy with and
// without the memo (the engine before ADR 0980); OPA evaluating the residual.
// Compare variants from one run: the machine is shared and absolute figures drift.
func BenchmarkDecideLatency(b *testing.B) {
	sc := services[2] // bank-a/account: called by user and gateway, ownership on every read
	for _, v := range []struct {
		name   string
		engine func(b *testing.B) *Engine
	}{
		{"compiled-residual", func(b *testing.B) *Engine { return newTestEngine(b, sc.workload) }},
		{"opa-full-memo", func(b *testing.B) *Engine { return newTestEngine(b, sc.workload, WithoutResidual()) }},
		{"opa-full-no-memo", func(b *testing.B) *Engine {
			return newTestEngine(b, sc.workload, WithoutResidual(), WithoutDecisionCache())
		}},
		{"opa-residual", func(b *testing.B) *Engine {
			return residualEngine(b, newTestEngine(b, sc.workload, WithoutResidual(), WithoutDecisionCache()))
		}},
	} {
		b.Run(v.name, func(b *testing.B) {
			e := v.engine(b)
			next := newTraffic(b, sc, 42)
			lat := make([]time.Duration, 0, 1<<16)
			allowed, i := 0, 0
			b.ReportAllocs()
			for b.Loop() {
				in := next()
				start := time.Now()
				d := e.Decide(b.Context(), in)
				lat = append(lat, time.Since(start))
				if d.Allow {
					allowed++
				}
				i++
			}
			if allowed == 0 || allowed == i {
				b.Fatalf("%d of %d inputs allowed: the input mix is not realistic", allowed, i)
			}
			p50, p99 := percentile(lat, 0.50), percentile(lat, 0.99)
			b.ReportMetric(float64(p50.Nanoseconds())/1e3, "p50-µs")
			b.ReportMetric(float64(p99.Nanoseconds())/1e3, "p99-µs")
		})
	}
}

// percentile returns the q-quantile (nearest rank) of d; it sorts d in place.
func percentile(d []time.Duration, q float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	slices.Sort(d)
	idx := int(q*float64(len(d))+0.5) - 1
	return d[max(0, min(idx, len(d)-1))]
}
