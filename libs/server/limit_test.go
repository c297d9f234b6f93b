package server

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time { return c.t }

func TestRateLimiter(t *testing.T) {
	clk := &fakeClock{t: time.Unix(1_000_000, 0)}
	l := NewRateLimiter(10, 3, clk.now) // 10/s, bursts of 3
	type step struct {
		advance time.Duration
		key     string
		ok      bool
		wait    time.Duration
	}
	steps := []step{
		{0, "a", true, 0}, {0, "a", true, 0}, {0, "a", true, 0}, // the burst
		{0, "a", false, 100 * time.Millisecond}, // empty: one token in 1/rate
		{0, "b", true, 0},                       // another key has its own bucket
		{50 * time.Millisecond, "a", false, 50 * time.Millisecond},
		{50 * time.Millisecond, "a", true, 0}, // refilled one token
		{time.Hour, "a", true, 0},             // idle: full again (and swept)
	}
	var got, want []step
	for _, s := range steps {
		clk.t = clk.t.Add(s.advance)
		ok, wait := l.Allow(s.key)
		got = append(got, step{s.advance, s.key, ok, wait.Round(time.Millisecond)})
		want = append(want, s)
	}
	if diff := cmp.Diff(want, got, cmp.AllowUnexported(step{})); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	if n := len(l.buckets); n != 1 {
		t.Errorf("%d buckets kept after an hour idle, want 1 (the key just used)", n)
	}
	if ok, _ := NewRateLimiter(0, 1, clk.now).Allow("x"); !ok {
		t.Error("a zero rate must disable the limit")
	}
}

func TestConcurrencyLimit(t *testing.T) {
	c := NewConcurrency(2)
	r1, ok1 := c.Acquire("bank-b")
	_, ok2 := c.Acquire("bank-b")
	_, ok3 := c.Acquire("bank-b")
	_, okOther := c.Acquire("bank-a")
	r1()
	r1() // releasing twice frees one slot only
	_, ok4 := c.Acquire("bank-b")
	_, ok5 := c.Acquire("bank-b")
	if diff := cmp.Diff([]bool{true, true, false, true, true, false}, []bool{ok1, ok2, ok3, okOther, ok4, ok5}); diff != "" {
		t.Errorf("admissions (-want +got):\n%s", diff)
	}

	// The middleware answers a full tenant 429 problem+json with Retry-After, at once.
	block, entered := make(chan struct{}), make(chan struct{}, 1)
	h := NewConcurrency(1).Limit(func(*http.Request) string { return "bank-b" })(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		entered <- struct{}{}
		<-block
	}))
	done := make(chan struct{})
	go func() {
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/v1/accounts", nil))
		close(done)
	}()
	<-entered
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/v1/accounts", nil))
	close(block)
	<-done
	var p map[string]any
	_ = json.Unmarshal(rec.Body.Bytes(), &p)
	got := []any{rec.Code, rec.Header().Get("Content-Type"), rec.Header().Get("Retry-After"), p["type"], p["status"]}
	want := []any{429, "application/problem+json", "1", TypeTooManyRequests, 429.0}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("refusal (-want +got):\n%s", diff)
	}
}
