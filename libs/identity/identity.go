// Package identity gives a workload its SPIFFE X.509 identity from the SPIFFE Workload API
// (the local SPIRE agent) and keeps it current. A Source waits for the first SVID with a
// deadline, follows rotation without restarts, and rides out agent outages: while the agent
// is away the last SVID keeps serving until it nears expiry, and the watch reconnects with
// backoff when the agent returns.
package identity

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// ErrNoSVID is returned when no SVID arrived before the start-up deadline, or when the
// current one has expired.
var ErrNoSVID = errors.New("no X.509 SVID")

// Source is a rotating X.509 SVID and trust bundle source backed by the Workload API. It
// implements x509svid.Source and x509bundle.Source, so it plugs straight into go-spiffe's
// tlsconfig helpers.
type Source struct {
	cfg    config
	client *workloadapi.Client
	cancel context.CancelFunc
	done   chan struct{}

	mu       sync.RWMutex
	svid     *x509svid.SVID
	bundles  *x509bundle.Set
	lastErr  error
	updated  chan struct{} // closed on first update
	firstSet bool

	// notAfter caches the current leaf's expiry (Unix nanoseconds, 0 before the first
	// SVID) so the per-request fail-closed check (transport.FailClosed) reads one atomic
	// instead of taking the lock.
	notAfter atomic.Int64
}

type config struct {
	addr        string
	timeout     time.Duration
	minValidity time.Duration
	log         *slog.Logger
	reg         prometheus.Registerer
	clock       func() time.Time
}

// Option configures a Source.
type Option func(*config)

// WithAddr sets the Workload API address (for example unix:///run/spire/agent.sock). The
// default is the SPIFFE_ENDPOINT_SOCKET environment variable, as go-spiffe reads it.
func WithAddr(addr string) Option { return func(c *config) { c.addr = addr } }

// WithStartTimeout bounds the wait for the first SVID. The default is 30 seconds.
func WithStartTimeout(d time.Duration) Option { return func(c *config) { c.timeout = d } }

// WithMinValidity sets how much validity an SVID must have left for Ready to succeed.
// A service whose SVID is about to lapse should leave the load balancer before peers
// start refusing it. The default is 30 seconds.
func WithMinValidity(d time.Duration) Option { return func(c *config) { c.minValidity = d } }

// WithLogger sets the logger for rotation and connection events.
func WithLogger(l *slog.Logger) Option { return func(c *config) { c.log = l } }

// WithRegisterer sets where the source's metrics are registered; nil disables them.
func WithRegisterer(r prometheus.Registerer) Option { return func(c *config) { c.reg = r } }

var (
	metricsOnce sync.Once
	svidExpiry  *prometheus.GaugeVec
	disconnects prometheus.Counter
	rotations   prometheus.Counter
)

func registerMetrics(reg prometheus.Registerer) {
	metricsOnce.Do(func() {
		svidExpiry = prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "ztbank_svid_expiry_seconds",
			Help: "Seconds until the workload's current X.509 SVID expires.",
		}, []string{"spiffe_id"})
		disconnects = prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ztbank_workloadapi_disconnects_total",
			Help: "Times the Workload API watch failed (agent gone or unreachable).",
		})
		rotations = prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ztbank_svid_rotations_total",
			Help: "X.509 SVID updates received from the Workload API.",
		})
		if reg != nil {
			reg.MustRegister(svidExpiry, disconnects, rotations)
		}
	})
}

// DefaultMinValidity is the validity an SVID must have left for Ready to succeed unless
// WithMinValidity says otherwise (ADR 0002). Tests that judge a service's readiness use it.
const DefaultMinValidity = 30 * time.Second

// defaultConfig is a Source's configuration before options: a 30-second start timeout and
// DefaultMinValidity.
func defaultConfig() config {
	return config{timeout: 30 * time.Second, minValidity: DefaultMinValidity, log: slog.Default(),
		reg: prometheus.DefaultRegisterer, clock: time.Now}
}

// New connects to the Workload API and blocks until the first SVID arrives or the start
// timeout passes. The error names the socket so an operator knows where to look.
func New(ctx context.Context, opts ...Option) (*Source, error) {
	cfg := defaultConfig()
	for _, o := range opts {
		o(&cfg)
	}
	registerMetrics(cfg.reg)
	socket := cfg.addr
	if socket == "" {
		if a, ok := workloadapi.GetDefaultAddress(); ok {
			socket = a
		}
	}
	if socket == "" {
		return nil, fmt.Errorf("%w: no Workload API socket configured (set SPIFFE_ENDPOINT_SOCKET)", ErrNoSVID)
	}
	clientOpts := []workloadapi.ClientOption{workloadapi.WithAddr(socket),
		workloadapi.WithLogger(quietLogger{})}
	client, err := workloadapi.New(ctx, clientOpts...)
	if err != nil {
		return nil, fmt.Errorf("workload API at %s: %w", socket, err)
	}
	cfg.addr = socket
	watchCtx, cancel := context.WithCancel(context.Background())
	s := &Source{cfg: cfg, client: client, cancel: cancel, done: make(chan struct{}), updated: make(chan struct{})}
	go func() {
		defer close(s.done)
		// WatchX509Context retries with backoff on every error except cancellation,
		// reporting each failure to OnX509ContextWatchError.
		_ = client.WatchX509Context(watchCtx, s)
	}()

	timer := time.NewTimer(cfg.timeout)
	defer timer.Stop()
	select {
	case <-s.updated:
		return s, nil
	case <-timer.C:
	case <-ctx.Done():
	}
	s.Close()
	s.mu.RLock()
	last := s.lastErr
	s.mu.RUnlock()
	if last != nil {
		return nil, fmt.Errorf("%w after %s from Workload API at %s: %v", ErrNoSVID, cfg.timeout, socket, last)
	}
	return nil, fmt.Errorf("%w after %s from Workload API at %s (is the agent running and is this binary registered?)", ErrNoSVID, cfg.timeout, socket)
}

// OnX509ContextUpdate implements workloadapi.X509ContextWatcher.
func (s *Source) OnX509ContextUpdate(c *workloadapi.X509Context) {
	svid := c.DefaultSVID()
	s.mu.Lock()
	wasDown := s.lastErr != nil
	s.svid, s.bundles, s.lastErr = svid, c.Bundles, nil
	s.notAfter.Store(svid.Certificates[0].NotAfter.UnixNano())
	first := !s.firstSet
	s.firstSet = true
	s.mu.Unlock()
	if first {
		close(s.updated)
	}
	if svidExpiry != nil {
		svidExpiry.WithLabelValues(svid.ID.String()).Set(time.Until(svid.Certificates[0].NotAfter).Seconds())
		rotations.Inc()
	}
	s.cfg.log.Info("svid updated", "spiffe_id", svid.ID.String(),
		"not_after", svid.Certificates[0].NotAfter.UTC().Format(time.RFC3339), "reconnected", wasDown)
}

// OnX509ContextWatchError implements workloadapi.X509ContextWatcher. The current SVID is
// kept: it is still valid, and refusing traffic because the agent restarted would turn a
// routine agent upgrade into an outage.
func (s *Source) OnX509ContextWatchError(err error) {
	if status.Code(err) == codes.Canceled || errors.Is(err, context.Canceled) {
		return
	}
	s.mu.Lock()
	s.lastErr = err
	s.mu.Unlock()
	if disconnects != nil {
		disconnects.Inc()
	}
	s.cfg.log.Warn("workload API watch failed; keeping current SVID", "socket", s.cfg.addr, "err", err.Error())
}

// GetX509SVID implements x509svid.Source.
func (s *Source) GetX509SVID() (*x509svid.SVID, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.svid == nil {
		return nil, ErrNoSVID
	}
	return s.svid, nil
}

// GetX509BundleForTrustDomain implements x509bundle.Source.
func (s *Source) GetX509BundleForTrustDomain(td spiffeid.TrustDomain) (*x509bundle.Bundle, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.bundles == nil {
		return nil, ErrNoSVID
	}
	return s.bundles.GetX509BundleForTrustDomain(td)
}

// ID returns the workload's SPIFFE ID.
func (s *Source) ID() spiffeid.ID {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.svid == nil {
		return spiffeid.ID{}
	}
	return s.svid.ID
}

// Ready reports nil while the SVID has at least the configured minimum validity left. An
// agent outage alone does not make a workload unready.
func (s *Source) Ready() error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.svid == nil {
		return ErrNoSVID
	}
	left := s.svid.Certificates[0].NotAfter.Sub(s.cfg.clock())
	if svidExpiry != nil {
		svidExpiry.WithLabelValues(s.svid.ID.String()).Set(left.Seconds())
	}
	if left < s.cfg.minValidity {
		return fmt.Errorf("%w: SVID %s expires in %s and the Workload API at %s has not renewed it (last error: %v)",
			ErrNoSVID, s.svid.ID, left.Truncate(time.Second), s.cfg.addr, s.lastErr)
	}
	return nil
}

// Connected reports whether the Workload API watch is currently healthy.
func (s *Source) Connected() bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.lastErr == nil
}

// NotAfter returns the expiry of the current leaf certificate, the zero time before the
// first SVID. It takes no lock and allocates nothing: servers call it on every request.
func (s *Source) NotAfter() time.Time {
	n := s.notAfter.Load()
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n)
}

// Leaf returns the current leaf certificate, for diagnostics.
func (s *Source) Leaf() *x509.Certificate {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.svid == nil {
		return nil
	}
	return s.svid.Certificates[0]
}

// Close stops the watch and releases the Workload API connection.
func (s *Source) Close() error {
	s.cancel()
	<-s.done
	return s.client.Close()
}

// quietLogger drops go-spiffe's own client logging: the watcher callbacks above report the
// same events once, in our structured format.
type quietLogger struct{}

func (quietLogger) Debugf(string, ...any) {}
func (quietLogger) Infof(string, ...any)  {}
func (quietLogger) Warnf(string, ...any)  {}
func (quietLogger) Errorf(string, ...any) {}
