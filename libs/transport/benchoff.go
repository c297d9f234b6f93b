//go:build ztbench_off

// This file is the transport half of the "zero trust off" reference build that
// tools/pathbench measures the request path against (issue 14): plain HTTP between
// workloads, no client certificates, no allowlist. Production builds never carry the tag
// (tests/benchtag), and a binary that does refuses to start outside the harness.

package transport

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/ztbank/ztbank/libs/caller"
)

const benchOff = true

// BenchOffEnv must be set to BenchOffConsent for a ztbench_off binary to start; only
// tools/pathbench sets it.
const (
	BenchOffEnv     = "ZTBANK_BENCH_ZERO_TRUST_OFF"
	BenchOffConsent = "measure-only-never-serve"
)

// benchWorkloadHeader carries the calling workload's ID in the off build, unproven: it stands
// in for the identity mTLS proves, so handlers and logs see the same caller.
const benchWorkloadHeader = "X-Ztbench-Workload"

func init() {
	if os.Getenv(BenchOffEnv) != BenchOffConsent {
		fmt.Fprintf(os.Stderr, "%s: built with ztbench_off (zero trust disabled: plain HTTP, no JWT verification, no policy, no audit); it runs only under tools/pathbench\n", os.Args[0])
		os.Exit(70)
	}
}

// benchClient is Client without TLS: the same pooling and keep-alive settings, the same
// user-token forwarding, over plain HTTP.
func benchClient(src Source, opts []ClientOption) *http.Client {
	var self string
	if s, err := src.GetX509SVID(); err == nil {
		self = s.ID.String()
	}
	t := &http.Transport{
		MaxIdleConns:        100,
		MaxIdleConnsPerHost: 32,
		IdleConnTimeout:     90 * time.Second,
		DialContext:         (&net.Dialer{Timeout: 3 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
	}
	c := &http.Client{Transport: forwardUserToken{plainScheme{t, self}}, Timeout: 10 * time.Second}
	for _, o := range opts {
		o(t, c)
	}
	return c
}

// plainScheme sends requests addressed to https:// peers (the peer URL template) over plain
// HTTP and names the calling workload in a header.
type plainScheme struct {
	next http.RoundTripper
	self string
}

func (p plainScheme) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	if r.URL.Scheme == "https" {
		r.URL.Scheme = "http"
	}
	r.Header.Set(benchWorkloadHeader, p.self)
	return p.next.RoundTrip(r)
}

// benchIdentify puts the workload the caller names into the context, unchecked.
func benchIdentify([]spiffeid.ID) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			id, _ := spiffeid.FromString(r.Header.Get(benchWorkloadHeader))
			next.ServeHTTP(w, r.WithContext(caller.WithWorkload(r.Context(), id)))
		})
	}
}
