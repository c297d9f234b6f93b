package compose

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// request is one call through the edge as a demo user.
type request struct {
	user, method, path, key, body string
}

// outcome is what came back.
type outcome struct {
	req     request
	at      time.Time
	status  int
	problem bool   // an application/problem+json body
	raw     string // the body, for failure messages and decoding
	err     error  // no HTTP answer at all
}

func (o outcome) ok() bool { return o.err == nil && o.status >= 200 && o.status < 300 }

// String is one line for failure messages.
func (o outcome) String() string {
	if o.err != nil {
		return fmt.Sprintf("%s %s as %s: %v", o.req.method, o.req.path, o.req.user, o.err)
	}
	raw := o.raw
	if len(raw) > 200 {
		raw = raw[:200] + "…"
	}
	return fmt.Sprintf("%s %s as %s: %d %s", o.req.method, o.req.path, o.req.user, o.status, raw)
}

// do sends one request through the edge.
func (e *stackEnv) do(ctx context.Context, r request) outcome {
	o := outcome{req: r, at: time.Now()}
	var body io.Reader
	if r.body != "" {
		body = strings.NewReader(r.body)
	}
	req, err := http.NewRequestWithContext(ctx, r.method, e.edge+r.path, body)
	if err != nil {
		o.err = err
		return o
	}
	req.Header.Set("Authorization", "Bearer "+e.tokens[r.user])
	if r.body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if r.key != "" {
		req.Header.Set("Idempotency-Key", r.key)
	}
	resp, err := e.client.Do(req)
	if err != nil {
		o.err = err
		return o
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		o.err = err
		return o
	}
	o.status, o.raw = resp.StatusCode, string(b)
	mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	o.problem = mt == "application/problem+json" && json.Valid(b)
	return o
}

// load sends requests at a fixed rate from a few concurrent clients until stopped, and
// keeps every outcome.
type load struct {
	cancel context.CancelFunc
	done   chan struct{}
	mu     sync.Mutex
	all    []outcome
}

// startLoad runs next(i) for the i-th request, rate requests per second over workers
// concurrent clients (a slow answer delays that client, not the schedule of the others).
func (e *stackEnv) startLoad(t *testing.T, workers int, rate float64, next func(i int) request) *load {
	t.Helper()
	ctx, cancel := context.WithCancel(context.WithoutCancel(t.Context()))
	l := &load{cancel: cancel, done: make(chan struct{})}
	ticks := make(chan int)
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range ticks {
				o := e.do(ctx, next(i))
				if ctx.Err() != nil && o.err != nil {
					return // cancelled by stop, not an outcome of the stack
				}
				l.mu.Lock()
				l.all = append(l.all, o)
				l.mu.Unlock()
			}
		}()
	}
	go func() {
		defer close(l.done)
		defer wg.Wait()
		defer close(ticks)
		tick := time.NewTicker(time.Duration(float64(time.Second) / rate))
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			select {
			case ticks <- i:
			case <-ctx.Done():
				return
			}
		}
	}()
	t.Cleanup(l.stop)
	return l
}

// stop ends the load and waits for requests in flight.
func (l *load) stop() {
	l.cancel()
	<-l.done
}

// outcomes returns a copy of every outcome so far.
func (l *load) outcomes() []outcome {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]outcome(nil), l.all...)
}

// counts returns how many requests succeeded and failed so far.
func (l *load) counts() (ok, failed int) {
	for _, o := range l.outcomes() {
		if o.ok() {
			ok++
		} else {
			failed++
		}
	}
	return ok, failed
}

// waitOK waits until at least n requests have succeeded.
func (l *load) waitOK(t *testing.T, n int, timeout time.Duration) {
	t.Helper()
	waitFor(t, timeout, fmt.Sprintf("%d successful requests", n), func() (bool, error) {
		ok, _ := l.counts()
		return ok >= n, nil
	})
}

// waitStreak waits until the last n outcomes that started after since all succeeded.
func (l *load) waitStreak(t *testing.T, since time.Time, n int, timeout time.Duration) {
	t.Helper()
	waitFor(t, timeout, fmt.Sprintf("%d consecutive successes", n), func() (bool, error) {
		var after []outcome
		for _, o := range l.outcomes() {
			if o.at.After(since) {
				after = append(after, o)
			}
		}
		if len(after) < n {
			return false, nil
		}
		for _, o := range after[len(after)-n:] {
			if !o.ok() {
				return false, fmt.Errorf("latest failure: %s", o)
			}
		}
		return true, nil
	})
}

// readRequests alternates DB-backed reads of both tenants: alice's profile (bank-a user
// service), bob's accounts (bank-b ledger through the gateway).
func readRequests(i int) request {
	if i%2 == 0 {
		return request{user: "alice@bank-a", method: http.MethodGet, path: "/bank-a/v1/users/me"}
	}
	return request{user: "bob@bank-b", method: http.MethodGet, path: "/bank-b/v1/accounts"}
}
