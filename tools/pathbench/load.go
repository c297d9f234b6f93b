package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// op is one kind of request the load sends through the edge, and the zero-trust hops it
// crosses: each hop is mTLS, an internal-JWT check, a policy decision and an audit line.
type op struct {
	Path string // report name: "read" or "pay"
	Hops int
	// build returns the request to send; i numbers the requests so payments alternate
	// direction and carry fresh Idempotency-Keys.
	build func(ctx context.Context, i int64) (*http.Request, error)
}

// target is one running stack as the load sees it: its public edge and the ops it serves.
type target struct {
	client *http.Client
	ops    []op
}

// result is what one load window measured, per op path.
type result struct {
	Latency  map[string][]time.Duration // successful requests only
	OK       int64
	Failed   int64          // transport errors and non-2xx answers
	Status   map[string]int // non-2xx answers and errors, by status or error class
	Dropped  int64          // open loop: requests not sent because maxInFlight were in flight
	Elapsed  time.Duration
	mu       sync.Mutex
	inFlight atomic.Int64
}

func newResult() *result {
	return &result{Latency: map[string][]time.Duration{}, Status: map[string]int{}}
}

func (r *result) record(path string, d time.Duration, status int, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch {
	case err != nil:
		r.Failed++
		r.Status[errClass(err)]++
	case status < 200 || status > 299:
		r.Failed++
		r.Status[fmt.Sprint(status)]++
	default:
		r.OK++
		r.Latency[path] = append(r.Latency[path], d)
	}
}

func errClass(err error) string {
	s := err.Error()
	switch {
	case strings.Contains(s, "timeout"), strings.Contains(s, "deadline"):
		return "timeout"
	case strings.Contains(s, "refused"):
		return "refused"
	}
	return "error"
}

// send issues one request and records its latency from due, the time the schedule meant
// it to start: a request the generator could not start on time (the machine is busy) is
// charged that delay, so a stalled system cannot hide its queue (coordinated omission).
func (t *target) send(ctx context.Context, res *result, i int64, due time.Time) {
	o := t.ops[int(i)%len(t.ops)]
	req, err := o.build(ctx, i)
	if err != nil {
		res.record(o.Path, 0, 0, err)
		return
	}
	resp, err := t.client.Do(req)
	if err != nil {
		res.record(o.Path, 0, 0, err)
		return
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	res.record(o.Path, time.Since(due), resp.StatusCode, nil)
}

// openLoop offers rate requests per second for d whatever the answers take, as clients
// that do not wait for each other would. At most maxInFlight are outstanding; the rest are
// counted as dropped rather than queued in the generator.
func (t *target) openLoop(ctx context.Context, rate float64, d time.Duration, maxInFlight int64, seq *atomic.Int64) *result {
	res := newResult()
	interval := time.Duration(float64(time.Second) / rate)
	n := int64(d.Seconds() * rate)
	start := time.Now()
	var wg sync.WaitGroup
	for k := int64(0); k < n && ctx.Err() == nil; k++ {
		due := start.Add(time.Duration(k) * interval)
		if w := time.Until(due); w > 0 {
			time.Sleep(w)
		}
		if res.inFlight.Load() >= maxInFlight {
			res.mu.Lock()
			res.Dropped++
			res.mu.Unlock()
			continue
		}
		res.inFlight.Add(1)
		i := seq.Add(1)
		wg.Go(func() {
			defer res.inFlight.Add(-1)
			t.send(ctx, res, i, due)
		})
	}
	wg.Wait()
	res.Elapsed = time.Since(start)
	return res
}

// closedLoop runs workers clients that each send the next request as soon as the previous
// one is answered, for d: the throughput the stack sustains when offered all it can take.
func (t *target) closedLoop(ctx context.Context, workers int, d time.Duration, seq *atomic.Int64) *result {
	res := newResult()
	start := time.Now()
	deadline := start.Add(d)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for ctx.Err() == nil && time.Now().Before(deadline) {
				t.send(ctx, res, seq.Add(1), time.Now())
			}
		})
	}
	wg.Wait()
	res.Elapsed = time.Since(start)
	return res
}

// idempotencyKey is a fresh random key for one payment.
func idempotencyKey() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
