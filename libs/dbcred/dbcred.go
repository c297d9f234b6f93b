// Package dbcred connects services to PostgreSQL with short-lived credentials. A TokenSource
// supplies the password for every new connection (an RDS IAM token in the cloud, a rotated
// password file locally), and Pool wires it into pgxpool so a connection is never opened
// with a credential older than the source allows. Expiry itself is enforced by the server:
// a stale credential is refused there, not merely discouraged here.
package dbcred

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ztbank/ztbank/libs/telemetry"
)

// MaxCredentialLifetime is how long RDS IAM tokens and locally rotated passwords are valid.
const MaxCredentialLifetime = 15 * time.Minute

// DefaultMaxConnLifetime recycles connections well inside MaxCredentialLifetime, so a
// revoked role or rotated password stops being usable through old connections too.
const DefaultMaxConnLifetime = 10 * time.Minute

// ErrInsecureTLS is returned when the DSN does not demand TLS with full certificate and host
// name verification (sslmode=verify-full).
var ErrInsecureTLS = errors.New("database connection must use sslmode=verify-full")

// Credential is a password for one login, with the time after which the server will refuse
// it. ExpiresAt is zero when the source does not know.
type Credential struct {
	Password  string
	ExpiresAt time.Time
}

// TokenSource supplies the credential for a new connection. Implementations must be safe
// for concurrent use; the pool calls Token once per connection it opens.
type TokenSource interface {
	Token(ctx context.Context) (Credential, error)
}

// TokenSourceFunc adapts a function to TokenSource.
type TokenSourceFunc func(ctx context.Context) (Credential, error)

// Token calls f.
func (f TokenSourceFunc) Token(ctx context.Context) (Credential, error) { return f(ctx) }

type options struct {
	role        string
	registerer  prometheus.Registerer
	maxLifetime time.Duration
	configure   func(*pgxpool.Config)
}

// Option configures Pool.
type Option func(*options)

// WithRole sets the role label of the metrics; by default it is the DSN's user.
func WithRole(role string) Option { return func(o *options) { o.role = role } }

// WithRegisterer registers the metrics on r instead of prometheus.DefaultRegisterer.
func WithRegisterer(r prometheus.Registerer) Option { return func(o *options) { o.registerer = r } }

// WithMaxConnLifetime sets how long a connection may live. It must be positive and below
// MaxCredentialLifetime.
func WithMaxConnLifetime(d time.Duration) Option { return func(o *options) { o.maxLifetime = d } }

// WithConfig lets the caller adjust the pool configuration (sizes, tracer, hooks) after the
// DSN is parsed. Pool re-applies its own BeforeConnect, lifetime and TLS checks afterwards.
func WithConfig(fn func(*pgxpool.Config)) Option { return func(o *options) { o.configure = fn } }

// Pool opens a pgxpool for dsn whose connections authenticate with passwords from src. It
// refuses a DSN that is not sslmode=verify-full: the password is a bearer credential and an
// RDS token is only accepted over TLS, so a connection that could be intercepted must not be
// attempted at all. Pool does not connect eagerly; the first query does.
func Pool(ctx context.Context, dsn string, src TokenSource, opts ...Option) (*pgxpool.Pool, error) {
	o := options{registerer: prometheus.DefaultRegisterer, maxLifetime: DefaultMaxConnLifetime}
	for _, opt := range opts {
		opt(&o)
	}
	if src == nil {
		return nil, errors.New("dbcred: nil TokenSource")
	}
	if o.maxLifetime <= 0 || o.maxLifetime >= MaxCredentialLifetime {
		return nil, fmt.Errorf("dbcred: connection lifetime %v must be positive and under %v", o.maxLifetime, MaxCredentialLifetime)
	}
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("dbcred: parse DSN: %w", err)
	}
	if o.configure != nil {
		o.configure(cfg)
	}
	if err := RequireVerifyFull(&cfg.ConnConfig.Config); err != nil {
		return nil, err
	}
	if o.role == "" {
		o.role = cfg.ConnConfig.User
	}
	m, err := metricsFor(o.registerer)
	if err != nil {
		return nil, err
	}
	refreshes := m.refreshes.WithLabelValues(o.role)
	failures := m.failures.WithLabelValues(o.role)

	// Jitter spreads reconnections so a pool's connections do not all expire together; the
	// total stays under the credential lifetime.
	cfg.MaxConnLifetime = o.maxLifetime
	cfg.MaxConnLifetimeJitter = min(o.maxLifetime/10, MaxCredentialLifetime-o.maxLifetime-time.Nanosecond)
	var (
		mu   sync.Mutex
		last [sha256.Size]byte
	)
	// Every query becomes a span of the request that issued it: the last hop of the trace.
	if cfg.ConnConfig.Tracer == nil {
		cfg.ConnConfig.Tracer = telemetry.PgxTracer()
	}
	cfg.BeforeConnect = func(ctx context.Context, cc *pgx.ConnConfig) error {
		cred, err := src.Token(ctx)
		if err != nil {
			failures.Inc()
			return fmt.Errorf("dbcred: credential for %s: %w", o.role, err)
		}
		if cred.Password == "" {
			failures.Inc()
			return fmt.Errorf("dbcred: credential for %s is empty", o.role)
		}
		// A refresh is a credential we have not used before; comparing hashes keeps a
		// second copy of the secret out of memory.
		sum := sha256.Sum256([]byte(cred.Password))
		mu.Lock()
		if sum != last {
			last = sum
			refreshes.Inc()
		}
		mu.Unlock()
		cc.Password = cred.Password
		return nil
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("dbcred: %w", err)
	}
	registerPoolStats(o.registerer, o.role, pool)
	return pool, nil
}

// RequireVerifyFull reports ErrInsecureTLS unless every host cfg may try is reached over TLS
// that verifies both the certificate chain and the host name.
func RequireVerifyFull(cfg *pgconn.Config) error {
	check := func(host string, t interface{ verified() bool }) error {
		if !t.verified() {
			return fmt.Errorf("dbcred: host %s: %w", host, ErrInsecureTLS)
		}
		return nil
	}
	if err := check(cfg.Host, tlsOf{cfg.TLSConfig}); err != nil {
		return err
	}
	for _, fb := range cfg.Fallbacks {
		if err := check(fb.Host, tlsOf{fb.TLSConfig}); err != nil {
			return err
		}
	}
	return nil
}
