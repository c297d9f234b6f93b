package server

import (
	"fmt"
	"math"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ztbank/ztbank/libs/problem"
	"github.com/ztbank/ztbank/libs/telemetry"
)

// TypeTooManyRequests is the problem type of a request refused by a rate or concurrency
// limit (429 with Retry-After).
const TypeTooManyRequests = problem.TypeBase + "too-many-requests"

// WriteTooMany answers 429 problem+json with a Retry-After of at least one second. limit
// names which limit refused (per-user rate, per-tenant rate, per-tenant concurrency) and is
// shown to the client: it is the client's own budget, not anyone else's data.
func WriteTooMany(w http.ResponseWriter, r *http.Request, limit string, retryAfter time.Duration) {
	secs := int(math.Ceil(retryAfter.Seconds()))
	if secs < 1 {
		secs = 1
	}
	limited().WithLabelValues(limit).Inc()
	w.Header().Set("Retry-After", strconv.Itoa(secs))
	problem.WriteDetails(w, problem.Details{Type: TypeTooManyRequests, Title: http.StatusText(http.StatusTooManyRequests),
		Status: http.StatusTooManyRequests, Detail: fmt.Sprintf("%s exceeded; retry after %d s", limit, secs), Instance: r.URL.Path})
}

// limited counts 429 answers by the limit that refused.
var limited = telemetry.Lazy(func() *prometheus.CounterVec {
	return prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "ztbank_limited_requests_total",
		Help: "Requests answered 429 by a rate or concurrency limit, by limit.",
	}, []string{"limit"})
})

// RateLimiter is a token bucket per key: each key may make Burst requests at once and
// Rate per second sustained. Idle keys are forgotten once their bucket is full again, so
// the map holds only keys active within the last Burst/Rate seconds.
type RateLimiter struct {
	rate, burst float64
	now         func() time.Time

	mu      sync.Mutex
	buckets map[string]*bucket
	sweepAt time.Time
}

type bucket struct {
	tokens float64
	last   time.Time
}

// NewRateLimiter returns a limiter of rate requests per second with bursts of burst. A rate
// of zero or less disables it (every request is allowed).
func NewRateLimiter(rate float64, burst int, now func() time.Time) *RateLimiter {
	if now == nil {
		now = time.Now
	}
	if burst < 1 {
		burst = 1
	}
	return &RateLimiter{rate: rate, burst: float64(burst), now: now, buckets: map[string]*bucket{}}
}

// Allow takes one token from key's bucket. When none is left it reports how long until
// one is.
func (l *RateLimiter) Allow(key string) (bool, time.Duration) {
	if l == nil || l.rate <= 0 {
		return true, 0
	}
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.After(l.sweepAt) {
		l.sweep(now)
	}
	b, ok := l.buckets[key]
	if !ok {
		b = &bucket{tokens: l.burst, last: now}
		l.buckets[key] = b
	}
	b.tokens = min(l.burst, b.tokens+now.Sub(b.last).Seconds()*l.rate)
	b.last = now
	if b.tokens >= 1 {
		b.tokens--
		return true, 0
	}
	return false, time.Duration((1 - b.tokens) / l.rate * float64(time.Second))
}

// sweep forgets buckets that have refilled completely: they are indistinguishable from new.
func (l *RateLimiter) sweep(now time.Time) {
	full := time.Duration(l.burst / l.rate * float64(time.Second))
	for k, b := range l.buckets {
		if now.Sub(b.last) >= full {
			delete(l.buckets, k)
		}
	}
	l.sweepAt = now.Add(max(full, time.Second))
}

// Concurrency bounds the requests in flight per key (a tenant): one tenant's slow or
// flooding requests hold at most Max slots, and never another tenant's.
type Concurrency struct {
	max      int
	mu       sync.Mutex
	inflight map[string]int
}

// NewConcurrency returns a limiter of max requests in flight per key; zero or less
// disables it.
func NewConcurrency(max int) *Concurrency {
	return &Concurrency{max: max, inflight: map[string]int{}}
}

// Acquire takes a slot for key; release returns it. ok is false when key has Max in flight.
func (c *Concurrency) Acquire(key string) (release func(), ok bool) {
	if c == nil || c.max <= 0 {
		return func() {}, true
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.inflight[key] >= c.max {
		return nil, false
	}
	c.inflight[key]++
	var once sync.Once
	return func() {
		once.Do(func() {
			c.mu.Lock()
			defer c.mu.Unlock()
			if c.inflight[key]--; c.inflight[key] <= 0 {
				delete(c.inflight, key)
			}
		})
	}, true
}

// Limit is middleware that admits at most Max concurrent requests per key(r) and answers
// the rest 429 at once: a request waits for a slot nowhere, so a flood costs its tenant
// refusals, not everyone latency.
func (c *Concurrency) Limit(key func(*http.Request) string) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			release, ok := c.Acquire(key(r))
			if !ok {
				WriteTooMany(w, r, "per-tenant concurrency", time.Second)
				return
			}
			defer release()
			next.ServeHTTP(w, r)
		})
	}
}
