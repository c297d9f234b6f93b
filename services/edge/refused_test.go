package main

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/ztbank/ztbank/libs/server"
	"github.com/ztbank/ztbank/services/edge/exchange"
	"github.com/ztbank/ztbank/services/edge/extoken"
)

// countingVerifier counts the external-token verifications the exchange asks for: the
// expensive step (JWS signature, JWKS) that a refused request must not repeat (ADR 0990).
type countingVerifier struct {
	exchange.TokenVerifier
	n atomic.Int64
}

func (c *countingVerifier) Verify(ctx context.Context, raw string) (extoken.Token, error) {
	c.n.Add(1)
	return c.TokenVerifier.Verify(ctx, raw)
}

// limitedEdge is the public handler of te with a counting verifier and limits that never
// refill (frozen clock): one request per user and per tenant, then 429.
func limitedEdge(te *testEdge) (http.Handler, *countingVerifier) {
	cv := &countingVerifier{TokenVerifier: te.ext}
	frozen := func() time.Time { return time.Unix(1_000_000, 0) }
	d := te.deps
	d.Exchanger = exchange.New(cv, te.mapper, te.trusted, te.minter, exchange.WithClock(te.clk.Now),
		exchange.WithLogger(d.Log))
	d.Limits = &Limits{User: server.NewRateLimiter(1, 1, frozen), Tenant: server.NewRateLimiter(1, 1, frozen),
		InFlight: server.NewConcurrency(8)}
	return NewPublicHandler(d), cv
}

func serve(h http.Handler, path, token string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(http.MethodGet, path, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

// TestRefusalsCostNoVerification: a flood from a known user is refused 429 problem+json
// with Retry-After without verifying its token again, and without a log line per
// refusal; a forged or expired token never gets the cached answer of a good one.
func TestRefusalsCostNoVerification(t *testing.T) {
	te := newTestEdge(t)
	h, cv := limitedEdge(te)
	good := te.provider.SignRS256(t, with(te.claims("bob@bank-b"), "exp", te.clk.Now().Add(time.Minute).Unix()))
	if rec := serve(h, "/bank-b/v1/accounts", good); rec.Code != http.StatusOK {
		t.Fatalf("first request: %d %s", rec.Code, rec.Body)
	}
	te.logs.Reset()
	const flood = 200
	statuses := map[int]int{}
	for range flood {
		rec := serve(h, "/bank-b/v1/accounts", good)
		statuses[rec.Code]++
		if rec.Code == http.StatusTooManyRequests && (rec.Header().Get("Retry-After") == "" ||
			rec.Header().Get("Content-Type") != "application/problem+json") {
			t.Fatalf("429 without Retry-After or problem+json: %v", rec.Header())
		}
	}
	if diff := cmp.Diff(map[int]int{http.StatusTooManyRequests: flood}, statuses); diff != "" {
		t.Errorf("flood statuses (-want +got):\n%s", diff)
	}
	if n := cv.n.Load(); n != 1 {
		t.Errorf("%d verifications for 1 + %d requests with one token, want 1", n, flood)
	}
	if lines := strings.Count(te.logs.String(), "\n"); lines != 0 {
		t.Errorf("%d log lines for %d 429s, want none (metrics count them)", lines, flood)
	}

	// A forged token (the good one with another signature) is verified and refused: the
	// cache is keyed by the whole token, signature included.
	parts := strings.Split(good, ".")
	forged := parts[0] + "." + parts[1] + "." + b64("not the signature")
	before := cv.n.Load()
	if rec := serve(h, "/bank-b/v1/accounts", forged); rec.Code != http.StatusUnauthorized {
		t.Errorf("forged token: %d, want 401", rec.Code)
	}
	if cv.n.Load() != before+1 {
		t.Error("the forged token was not verified")
	}

	// Once the external token has expired the cached grant is gone: 401, not 429 or 200.
	te.clk.Add(time.Minute + time.Second)
	if rec := serve(h, "/bank-b/v1/accounts", good); rec.Code != http.StatusUnauthorized {
		t.Errorf("expired token: %d, want 401", rec.Code)
	}
}

// BenchmarkRefusedRequest is the edge's cost of one refused request through the public
// handler (tracing, metrics, exchange, limits, problem+json), without sockets: "limited" is
// a known user over its rate (429), "forged" a well-formed token with a bad signature (401,
// verified and logged every time). cpu-ns/op is the process's CPU time per request
// (user+system, GC included), which a loaded machine does not inflate as it does the wall
// time of ns/op; verifies/op counts external-token verifications.
func BenchmarkRefusedRequest(b *testing.B) {
	te := newTestEdge(b)
	good := te.provider.SignRS256(b, te.claims("bob@bank-b"))
	parts := strings.Split(good, ".")
	forged := parts[0] + "." + parts[1] + "." + b64("not the signature")
	for _, bc := range []struct {
		name, token string
		status      int
	}{{"limited", good, http.StatusTooManyRequests}, {"forged", forged, http.StatusUnauthorized}} {
		b.Run(bc.name, func(b *testing.B) {
			h, cv := limitedEdge(te)
			serve(h, "/bank-b/v1/accounts", good)
			start, n := cpuTime(b), cv.n.Load()
			b.ReportAllocs()
			for b.Loop() {
				if rec := serve(h, "/bank-b/v1/accounts", bc.token); rec.Code != bc.status {
					b.Fatalf("status %d, want %d", rec.Code, bc.status)
				}
			}
			b.ReportMetric(float64(cpuTime(b)-start)/float64(b.N), "cpu-ns/op")
			b.ReportMetric(float64(cv.n.Load()-n)/float64(b.N), "verifies/op")
		})
	}
}

func cpuTime(tb testing.TB) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
