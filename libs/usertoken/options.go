package usertoken

import (
	"log/slog"
	"time"
)

// Option configures an Issuer, a Verifier or RemoteKeys. Each constructor reads only the
// options that concern it, so one clock option can be handed to all three in a test.
type Option func(*options)

type options struct {
	now         func() time.Time
	ttl         time.Duration
	period      time.Duration
	overlap     time.Duration
	leeway      time.Duration
	cacheSize   int
	minRefetch  time.Duration
	maxAge      time.Duration
	log         *slog.Logger
	fetchBudget time.Duration
	ring        KeyRing
}

func defaults() options {
	return options{
		now:         time.Now,
		ttl:         MaxTTL,
		period:      time.Hour,
		overlap:     MaxTTL + time.Minute,
		leeway:      10 * time.Second,
		cacheSize:   10_000,
		minRefetch:  5 * time.Second,
		maxAge:      5 * time.Minute,
		fetchBudget: 5 * time.Second,
	}
}

func apply(opts []Option) options {
	o := defaults()
	for _, opt := range opts {
		opt(&o)
	}
	if o.log == nil {
		o.log = slog.Default()
	}
	return o
}

// WithClock replaces time.Now. Tests use it to step through expiry and key rotation without
// sleeping.
func WithClock(now func() time.Time) Option { return func(o *options) { o.now = now } }

// WithTTL sets how long minted tokens live (Issuer). It is capped at MaxTTL.
func WithTTL(d time.Duration) Option { return func(o *options) { o.ttl = d } }

// WithRotation sets how often the Issuer replaces its signing key and how long the previous
// key stays published afterwards. The overlap must cover the token TTL, or tokens signed just
// before a rotation would be refused while still valid.
func WithRotation(period, overlap time.Duration) Option {
	return func(o *options) { o.period, o.overlap = period, overlap }
}

// WithLeeway sets the clock skew tolerated on exp, nbf and iat (Verifier).
func WithLeeway(d time.Duration) Option { return func(o *options) { o.leeway = d } }

// WithCacheSize bounds the Verifier's verified-token cache.
func WithCacheSize(n int) Option { return func(o *options) { o.cacheSize = n } }

// WithRefetch sets RemoteKeys' limits: an unknown kid triggers at most one fetch per
// minInterval, and a cached key set older than maxAge is refreshed before use.
func WithRefetch(minInterval, maxAge time.Duration) Option {
	return func(o *options) { o.minRefetch, o.maxAge = minInterval, maxAge }
}

// WithLogger sets where refusals are logged (Verifier, Middleware) and key fetch failures
// (RemoteKeys).
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.log = l } }
