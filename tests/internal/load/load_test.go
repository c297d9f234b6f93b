package load

import (
	"errors"
	"testing"
	"time"
)

// recorder is a testing.TB that remembers whether Check failed it.
type recorder struct {
	testing.TB
	failed bool
}

func (r *recorder) Errorf(string, ...any) { r.failed = true }
func (r *recorder) Logf(string, ...any)   {}
func (r *recorder) Helper()               {}

func TestCheck(t *testing.T) {
	for _, tc := range []struct {
		name     string
		stats    Stats
		wantFail bool
	}{
		{"fast and clean", Stats{Requests: 2000, Elapsed: 5 * time.Second}, false},
		{"a failed request", Stats{Requests: 2000, Failures: 1, Elapsed: 5 * time.Second}, true},
		{"idle", Stats{Requests: 100, Elapsed: 5 * time.Second}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := &recorder{TB: t}
			tc.stats.Check(r, tc.name)
			if r.failed != tc.wantFail {
				t.Errorf("Check failed = %v, want %v", r.failed, tc.wantFail)
			}
		})
	}
}

func TestStartCountsEveryClient(t *testing.T) {
	seen := make(chan int, 1000)
	stop := Start(func(c, i int) error {
		if i == 0 {
			seen <- c
		}
		if c == 3 && i == 0 {
			return errors.New("boom")
		}
		time.Sleep(time.Millisecond)
		return nil
	})
	clients := map[int]bool{}
	for len(clients) < Clients {
		clients[<-seen] = true
	}
	s := stop()
	if s.Failures != 1 || s.Requests < Clients || len(s.FirstErrors) != 1 {
		t.Errorf("Start() = %+v, want %d+ requests and the one failure", s, Clients)
	}
}
