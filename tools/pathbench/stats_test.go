package main

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func ms(xs ...float64) []time.Duration {
	var out []time.Duration
	for _, x := range xs {
		out = append(out, time.Duration(x*float64(time.Millisecond)))
	}
	return out
}

func TestSummarise(t *testing.T) {
	hundred := make([]float64, 100)
	for i := range hundred {
		hundred[i] = float64(100 - i) // 100..1, unsorted
	}
	for _, tc := range []struct {
		name string
		in   []time.Duration
		want dist
	}{
		{"empty", nil, dist{}},
		{"one", ms(3), dist{N: 1, P50: 3, P90: 3, P99: 3}},
		{"hundred", ms(hundred...), dist{N: 100, P50: 50, P90: 90, P99: 99}},
		{"ten", ms(10, 9, 8, 7, 6, 5, 4, 3, 2, 1), dist{N: 10, P50: 5, P90: 9, P99: 10}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, summarise(tc.in)); diff != "" {
				t.Errorf("summarise (-want +got):\n%s", diff)
			}
		})
	}
}

func TestMedian(t *testing.T) {
	for _, tc := range []struct {
		in   []float64
		want float64
	}{
		{nil, 0},
		{[]float64{4}, 4},
		{[]float64{5, 1, 3}, 3},
		{[]float64{4, 1, 3, 2}, 2.5},
	} {
		if got := median(tc.in); got != tc.want {
			t.Errorf("median(%v) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

func TestMedianDist(t *testing.T) {
	got := medianDist([]dist{
		{N: 10, P50: 1, P90: 2, P99: 9},
		{}, // a round that measured nothing does not count
		{N: 10, P50: 3, P90: 4, P99: 5},
		{N: 20, P50: 2, P90: 3, P99: 4},
	})
	if diff := cmp.Diff(dist{N: 40, P50: 2, P90: 3, P99: 5}, got); diff != "" {
		t.Errorf("medianDist (-want +got):\n%s", diff)
	}
}

func TestDerived(t *testing.T) {
	for _, tc := range []struct {
		name      string
		got, want float64
	}{
		{"per hop", perHop(1.3, 1.0, 3), 0.1},
		{"per hop without hops", perHop(1.3, 1.0, 0), 0},
		{"ratio", ratio(300, 400), 0.75},
		{"ratio of nothing", ratio(3, 0), 0},
		{"per thousand", perThousand(2, 4000), 0.5},
		{"per thousand of nothing", perThousand(2, 0), 0},
	} {
		if d := tc.got - tc.want; d > 1e-9 || d < -1e-9 {
			t.Errorf("%s = %v, want %v", tc.name, tc.got, tc.want)
		}
	}
}
