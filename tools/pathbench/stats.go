package main

import (
	"math"
	"slices"
	"time"
)

// dist summarises one latency sample in milliseconds.
type dist struct {
	N   int     `json:"n"`
	P50 float64 `json:"p50_ms"`
	P90 float64 `json:"p90_ms"`
	P99 float64 `json:"p99_ms"`
}

// summarise returns the nearest-rank percentiles of ds (the value at or below which p% of
// the sample lies), the usual definition for latency SLOs. An empty sample is all zeros.
func summarise(ds []time.Duration) dist {
	if len(ds) == 0 {
		return dist{}
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	rank := func(p float64) float64 {
		i := int(math.Ceil(p/100*float64(len(s)))) - 1
		i = max(0, min(i, len(s)-1))
		return float64(s[i]) / float64(time.Millisecond)
	}
	return dist{N: len(s), P50: rank(50), P90: rank(90), P99: rank(99)}
}

// median of xs (the mean of the middle two for an even count); zero for none. Each figure
// of the report is the median over the interleaved rounds, so one round disturbed by the
// machine's other work moves it less than a mean would.
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// medianDist is the per-percentile median of several rounds' distributions; N is their sum.
func medianDist(ds []dist) dist {
	var p50, p90, p99 []float64
	n := 0
	for _, d := range ds {
		if d.N == 0 {
			continue
		}
		n += d.N
		p50, p90, p99 = append(p50, d.P50), append(p90, d.P90), append(p99, d.P99)
	}
	return dist{N: n, P50: median(p50), P90: median(p90), P99: median(p99)}
}

// perHop is the latency zero trust adds to one hop: the difference between on and off
// spread over the hops that carry mTLS, a JWT check, a decision and an audit line.
func perHop(on, off float64, hops int) float64 {
	if hops <= 0 {
		return 0
	}
	return (on - off) / float64(hops)
}

// ratio is a/b, or zero when b is zero.
func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}

// perThousand is events per 1,000 requests.
func perThousand(events, requests float64) float64 {
	if requests == 0 {
		return 0
	}
	return 1000 * events / requests
}
