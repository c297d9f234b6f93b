package usertoken

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestCacheStatsCountHitsAndMisses: the first Verify of a token checks its signature, the
// repeats are cache hits, a second token is a miss again, and without a cache every call
// is a miss.
func TestCacheStatsCountHitsAndMisses(t *testing.T) {
	clk := newClock()
	iss := newIssuer(t, clk)
	first, second := mint(t, iss, alice), mint(t, iss, alice)
	type stats struct{ Hits, Misses uint64 }
	for _, tc := range []struct {
		name string
		opts []Option
		want stats
	}{
		{"cache", nil, stats{Hits: 4, Misses: 2}},
		{"no cache", []Option{WithCacheSize(0)}, stats{Hits: 0, Misses: 6}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := NewVerifier(iss, "bank-a", edgeID, append([]Option{WithClock(clk.Now)}, tc.opts...)...)
			for _, tok := range []string{first, first, first, second, second, second} {
				if _, err := v.Verify(t.Context(), tok); err != nil {
					t.Fatal(err)
				}
			}
			var got stats
			got.Hits, got.Misses = v.CacheStats()
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("CacheStats mismatch (-want +got):\n%s", diff)
			}
		})
	}
}
