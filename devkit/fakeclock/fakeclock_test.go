package fakeclock

import (
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// TestClock: the time moves by Add and Set only, and reads race with neither (run with -race).
func TestClock(t *testing.T) {
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	c := New(t0)
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 100 {
				_ = c.Now()
			}
		})
	}
	c.Add(time.Minute)
	wg.Wait()
	got := []time.Time{c.Now()}
	c.Set(t0.Add(time.Hour))
	got = append(got, c.Now())
	if diff := cmp.Diff([]time.Time{t0.Add(time.Minute), t0.Add(time.Hour)}, got); diff != "" {
		t.Errorf("times mismatch (-want +got):\n%s", diff)
	}
}
