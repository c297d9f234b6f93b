// Package load is what "under load" means in the suites that run the real stack: Clients
// concurrent clients, each sending its next request as soon as the previous one is answered,
// for the whole run, and the run must reach MinRate requests per second overall so that a
// test cannot pass while the services idle.
package load

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

const (
	// Clients is the number of concurrent clients.
	Clients = 8
	// MinRate is the overall requests per second a run must reach: ten times the single
	// sequential client the suites used before. Measured with -race on the 2-core machine
	// with two busy loops and other suites running beside: 131-399/s through the edge to
	// PostgreSQL, 435-718/s on the mTLS chains; 200/s was missed once through the edge.
	MinRate = 100.0
)

// Stats is what a run amounted to.
type Stats struct {
	Requests, Failures int64
	Elapsed            time.Duration
	FirstErrors        []string
}

// Rate is the achieved requests per second.
func (s Stats) Rate() float64 { return float64(s.Requests) / s.Elapsed.Seconds() }

func (s Stats) String() string {
	return fmt.Sprintf("%d clients, %d requests in %s (%.0f/s), %d failed", Clients, s.Requests,
		s.Elapsed.Round(time.Millisecond), s.Rate(), s.Failures)
}

// Check logs the run and fails t unless no request failed and the run reached MinRate.
func (s Stats) Check(t testing.TB, what string) {
	t.Helper()
	t.Logf("%s: %s", what, s)
	if s.Failures > 0 {
		t.Errorf("%s: %d of %d requests failed; first errors: %v", what, s.Failures, s.Requests, s.FirstErrors)
	}
	if s.Rate() < MinRate {
		t.Errorf("%s: %.0f requests/s, want at least %.0f: the load did not happen", what, s.Rate(), MinRate)
	}
}

// Start runs Clients goroutines, each calling do(client, i) for i = 0, 1, 2, ... until the
// returned stop is called; stop waits for the clients and returns the stats.
func Start(do func(client, i int) error) (stop func() Stats) {
	var (
		requests, failures atomic.Int64
		mu                 sync.Mutex
		firstErrs          []string
		done               = make(chan struct{})
		wg                 sync.WaitGroup
	)
	start := time.Now()
	for c := range Clients {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-done:
					return
				default:
				}
				err := do(c, i)
				requests.Add(1)
				if err != nil {
					failures.Add(1)
					mu.Lock()
					if len(firstErrs) < 5 {
						firstErrs = append(firstErrs, fmt.Sprintf("client %d request %d: %v", c, i, err))
					}
					mu.Unlock()
				}
			}
		})
	}
	return func() Stats {
		close(done)
		wg.Wait()
		mu.Lock()
		defer mu.Unlock()
		return Stats{Requests: requests.Load(), Failures: failures.Load(), Elapsed: time.Since(start),
			FirstErrors: append([]string(nil), firstErrs...)}
	}
}
