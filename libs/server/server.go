// Package server is the scaffolding every ztbank service shares: configuration from the
// environment, the workload's SPIFFE identity, mTLS clients to its allowed peers, the chi
// router with identity middleware, a separate plain port that serves only health and
// metrics, and graceful shutdown that drains in-flight requests.
package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/ztbank/ztbank/libs/authz"
	"github.com/ztbank/ztbank/libs/envvar"
	"github.com/ztbank/ztbank/libs/identity"
	"github.com/ztbank/ztbank/libs/logging"
	"github.com/ztbank/ztbank/libs/problem"
	"github.com/ztbank/ztbank/libs/telemetry"
	"github.com/ztbank/ztbank/libs/topology"
	"github.com/ztbank/ztbank/libs/transport"
	"github.com/ztbank/ztbank/libs/usertoken"
)

// Env is the configuration every service reads from its environment.
type Env struct {
	Workload     string         // ZTBANK_WORKLOAD: a topology workload name, <tenant>/<service> (required)
	TopologyPath string         // ZTBANK_TOPOLOGY; empty means the embedded topology
	Mode         transport.Mode // ZTBANK_TRANSPORT_MODE: direct (default) or mesh
	Socket       string         // SPIFFE_ENDPOINT_SOCKET (direct mode)
	Listen       string         // ZTBANK_LISTEN; default from the topology
	HealthListen string         // ZTBANK_HEALTH_LISTEN; default from the topology
	PeerURL      string         // ZTBANK_PEER_URL_TEMPLATE with {service} {namespace} {tenant} {listen}
	LogLevel     string         // ZTBANK_LOG_LEVEL
	StartTimeout time.Duration  // ZTBANK_SVID_TIMEOUT, default 30s
}

// LoadEnv reads and validates Env (LoadConfig reads it as part of the whole configuration).
func LoadEnv(getenv func(string) string) (Env, error) { return loadEnv(getenv, "") }

// Runtime is a started service's shared wiring.
type Runtime struct {
	Env      Env
	Topology *topology.Topology
	Self     topology.Workload
	Source   *identity.Source // nil in mesh mode
	Log      *slog.Logger
	// Authz is the service's policy engine, prepared and self-tested at start-up.
	Authz *authz.Engine
	// Tokens verifies internal user JWTs against the edge's JWKS (nil for the edge itself).
	Tokens *usertoken.Verifier

	// Config is the configuration the runtime was set up from.
	Config Config

	// Tenants bounds each tenant's requests in flight (Config.TenantConcurrency).
	Tenants *Concurrency

	draining        atomic.Bool
	shutdownTracing func(context.Context) error
	closers         []func()
}

// Setup loads the shared configuration from the environment and sets the runtime up from it
// (SetupConfig). Services load their whole configuration with their own loader and call
// SetupConfig; Setup serves callers that only need the shared part.
func Setup(ctx context.Context, service string, getenv func(string) string, stderr io.Writer) (*Runtime, error) {
	cfg, err := LoadConfig(service, envvar.NewReader(getenv, TenantVars))
	if err != nil {
		return nil, err
	}
	return SetupConfig(ctx, cfg, stderr)
}

// SetupConfig starts the runtime a loaded configuration describes: logging, tracing and (in
// direct mode) the SVID, checked to be the workload's own ID, so a mis-registered entry is a
// start-up error, not a silent identity swap.
func SetupConfig(ctx context.Context, cfg Config, stderr io.Writer) (*Runtime, error) {
	env, topo, self, service := cfg.Env, cfg.Topology, cfg.Self, cfg.Service
	var err error
	rt := &Runtime{Env: env, Topology: topo, Self: self, Config: cfg,
		Log: logging.New(stderr, env.LogLevel, service, self.Name), Tenants: NewConcurrency(cfg.TenantConcurrency)}
	slog.SetDefault(rt.Log)
	rt.shutdownTracing, err = telemetry.Start(ctx, cfg.Tracing, service, self.Name)
	if err != nil {
		return nil, err
	}
	if env.Mode == transport.Direct {
		src, err := identity.New(ctx, identity.WithAddr(env.Socket), identity.WithStartTimeout(env.StartTimeout),
			identity.WithLogger(rt.Log))
		if err != nil {
			return nil, err
		}
		if got := src.ID(); got != self.ID {
			src.Close()
			return nil, fmt.Errorf("workload API issued %s but workload %s is %s: check the SPIRE registration entry", got, self.Name, self.ID)
		}
		rt.Source = src
	}
	// Tenant workloads authorise every request with the embedded policy. The edge serves no
	// tenant's data: its decisions are the token exchange's, audited by the edge itself.
	if self.Tenant != "" {
		rt.Authz, err = authz.New(ctx, authz.Service{Workload: self.Name, Tenant: self.Tenant, ID: self.ID}, topo,
			append(cfg.Authz[:len(cfg.Authz):len(cfg.Authz)], authz.WithBufferedAuditWriter(stderr))...)
		if err != nil {
			rt.Close()
			return nil, fmt.Errorf("authorisation policy: %w", err)
		}
		// Registered first, so it runs last: the audit lines of whatever the other closers
		// still do are written too (ADR 1002).
		rt.AtClose(rt.Authz.Close)
	}
	if edge, ok := topo.Workload("edge"); ok && self.Tenant != "" {
		// The JWKS is public data, but fetching it over mTLS pinned to the edge's ID means
		// nobody else can feed this service signing keys.
		p, err := rt.peer(edge.Name)
		if err != nil {
			rt.Close()
			return nil, err
		}
		keys := usertoken.NewRemoteKeys(p.Client, p.BaseURL+"/.well-known/jwks.json", usertoken.WithLogger(rt.Log))
		rt.Tokens = usertoken.NewVerifier(keys, self.Tenant, edge.ID, usertoken.WithLogger(rt.Log))
	}
	return rt, nil
}

// UserToken is middleware that requires a valid internal JWT and puts its user into the
// request context. Banking routes sit behind it.
func (rt *Runtime) UserToken(next http.Handler) http.Handler {
	if rt.Tokens == nil {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			problem.Write(w, r, problem.Refuse(problem.TypeInternalToken, problem.ErrUnauthenticated, "this workload does not accept user tokens", nil))
		})
	}
	return usertoken.Middleware(rt.Tokens)(telemetry.Annotate(next))
}

// OptionalUserToken verifies an internal JWT when one is present (a bad one is still a
// 401) and lets workload-only requests through without one. Diagnostic routes use it so
// they can report the user a request carries.
func (rt *Runtime) OptionalUserToken(next http.Handler) http.Handler {
	strict := rt.UserToken(next)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") == "" {
			next.ServeHTTP(w, r)
			return
		}
		strict.ServeHTTP(w, r)
	})
}

// Close releases the identity source.
func (rt *Runtime) Close() {
	// Release what the service attached (its database pool) before tracing is flushed.
	for i := len(rt.closers) - 1; i >= 0; i-- {
		rt.closers[i]()
	}
	rt.closers = nil
	if rt.shutdownTracing != nil {
		// Flush spans still buffered, but never hold up shutdown on an absent collector.
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		rt.shutdownTracing(ctx)
		cancel()
	}
	if rt.Source != nil {
		rt.Source.Close()
	}
}

// Peer is an HTTP client bound to one allowed peer workload.
type Peer struct {
	Name    string
	BaseURL string
	Client  *http.Client
}

// Peer returns a client for a workload this service may call per the topology. Asking for
// any other workload is a programming error reported at start-up, not at request time.
func (rt *Runtime) Peer(name string, opts ...transport.ClientOption) (*Peer, error) {
	if !rt.Topology.MayCall(rt.Self.Name, name) {
		return nil, fmt.Errorf("topology does not allow %s to call %s", rt.Self.Name, name)
	}
	return rt.peer(name, opts...)
}

// SameTenantPeer returns a client for the named service of this workload's own tenant (e.g.
// "ledger" for a payment workload), resolved from the topology, so a binary names its peers
// by role and serves whichever tenant its workload identity belongs to.
func (rt *Runtime) SameTenantPeer(service string, opts ...transport.ClientOption) (*Peer, error) {
	w, ok := rt.Topology.TenantWorkload(rt.Self.Tenant, service)
	if !ok {
		return nil, fmt.Errorf("tenant %q of %s runs no %s in the topology", rt.Self.Tenant, rt.Self.Name, service)
	}
	return rt.Peer(w.Name, opts...)
}

func (rt *Runtime) peer(name string, opts ...transport.ClientOption) (*Peer, error) {
	w, ok := rt.Topology.Workload(name)
	if !ok {
		return nil, fmt.Errorf("unknown workload %s", name)
	}
	p := &Peer{Name: name, BaseURL: rt.PeerURL(w)}
	// Tracing wraps last, outermost, so its client span also covers any wrapper the caller added.
	opts = append(opts[:len(opts):len(opts)], transport.WithRoundTripper(telemetry.Outgoing(name)))
	if rt.Env.Mode == transport.Mesh {
		p.Client = transport.MeshClient(opts...)
	} else {
		p.Client = transport.Client(rt.Source, w.ID, opts...)
	}
	return p, nil
}

// PeerURL expands the peer URL template for w. {listen} is the peer's topology address
// unless ZTBANK_PEER_ADDR_<WORKLOAD> (e.g. ZTBANK_PEER_ADDR_BANK_A_USER) overrides it, as
// the local stack does when tests run it on free ports.
func (rt *Runtime) PeerURL(w topology.Workload) string {
	return rt.Config.PeerURLFor(w)
}

// PeerURLFor expands the peer URL template for w (see Runtime.PeerURL). The deploy contract
// test uses it to check that every peer URL names a Service port that exists.
func (c Config) PeerURLFor(w topology.Workload) string {
	listen := w.Listen
	if a := c.PeerAddrs[w.Name]; a != "" {
		listen = a
	}
	return strings.NewReplacer("{service}", w.Service, "{namespace}", w.Namespace,
		"{tenant}", w.Tenant, "{listen}", listen).Replace(c.PeerURL)
}

// Serve runs the service's API on the mTLS listener (plain HTTP behind the sidecar in mesh
// mode) and health/metrics on the plain health listener until ctx is done, then drains.
// Extra readiness checks (a database ping, say) are run by /readyz.
func (rt *Runtime) Serve(ctx context.Context, api http.Handler, ready ...func(context.Context) error) error {
	return rt.ServeAll(ctx, rt.apiListeners(ctx, api, ready)...)
}

// ServeListeners is Serve on listeners the caller opened (tests use port 0).
func (rt *Runtime) ServeListeners(ctx context.Context, apiLn, healthLn net.Listener, api http.Handler, ready ...func(context.Context) error) error {
	ls := rt.apiListeners(ctx, api, ready)
	ls[0].Ln, ls[1].Ln = apiLn, healthLn
	return rt.ServeAll(ctx, ls...)
}

// apiListeners are a tenant service's two listeners: the API (mTLS against the topology's
// allowlist in direct mode) and health. The API's route table is published on the health
// port's /metrics.
func (rt *Runtime) apiListeners(ctx context.Context, api http.Handler, ready []func(context.Context) error) []Listener {
	apiSrv := rt.NewHTTPServer(ctx, rt.FailClosed(api))
	if rt.Env.Mode == transport.Direct {
		apiSrv.TLSConfig = transport.ServerTLS(rt.Source, rt.Topology.AllowedCallers(rt.Self.Name))
	}
	rt.publishRoutes(api)
	return []Listener{
		{Name: "api", Addr: rt.Env.Listen, Server: apiSrv},
		{Name: "health", Addr: rt.Env.HealthListen, Server: &http.Server{Handler: rt.HealthMux(ready...), ReadHeaderTimeout: 5 * time.Second}},
	}
}

// FailClosed wraps the handler of an mTLS listener so that no request is served on a
// connection whose client certificate has expired, nor while this workload's own SVID has
// expired (transport.FailClosed, ADR 0989). In mesh mode the sidecar terminates mTLS and
// holds the certificates, so h is returned as it is.
func (rt *Runtime) FailClosed(h http.Handler) http.Handler {
	if rt.Source == nil {
		return h
	}
	return transport.FailClosed(rt.Source.NotAfter)(h)
}

// Listener is one HTTP server a service runs until shutdown: the API, the health port, or
// (the edge) a public and an internal listener. Server carries the handler, TLS and limits.
type Listener struct {
	Name   string       // for logs: "api", "health", "public", ...
	Addr   string       // opened by ServeAll unless Ln is set
	Ln     net.Listener // an already open listener (tests use port 0)
	Server *http.Server // served with TLS when Server.TLSConfig is set
}

// NewHTTPServer is an API server with the platform's limits and timeouts: bounded header
// and body reads, request contexts that outlive ctx's cancellation only to drain, and
// net/http's TLS handshake errors counted and logged as structured lines.
func (rt *Runtime) NewHTTPServer(ctx context.Context, h http.Handler) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       15 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    32 << 10,
		ErrorLog:          log.New(handshakeLog{rt.Log}, "", 0),
		BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
}

// ServeAll is the one serve/drain loop of every binary, the edge included: it opens and
// serves every listener until ctx is done or one fails, then reports not-ready (so load
// balancers stop sending) and drains what is in flight on all of them.
func (rt *Runtime) ServeAll(ctx context.Context, listeners ...Listener) error {
	for i := range listeners {
		if listeners[i].Ln != nil {
			continue
		}
		ln, err := net.Listen("tcp", listeners[i].Addr)
		if err != nil {
			for _, l := range listeners[:i] {
				l.Ln.Close()
			}
			return fmt.Errorf("listen %s (%s): %w", listeners[i].Addr, listeners[i].Name, err)
		}
		listeners[i].Ln = ln
	}
	errc := make(chan error, len(listeners))
	attrs := []any{"mode", string(rt.Env.Mode), "spiffe_id", rt.Self.ID.String()}
	for _, l := range listeners {
		// Read before the goroutine starts: Serve configures HTTP/2 by writing TLSConfig,
		// which would race with this read (go test -race).
		useTLS := l.Server.TLSConfig != nil
		go func() {
			if useTLS {
				errc <- l.Server.ServeTLS(l.Ln, "", "")
			} else {
				errc <- l.Server.Serve(l.Ln)
			}
		}()
		attrs = append(attrs, l.Name, l.Ln.Addr().String())
	}
	rt.Log.Info("serving", attrs...)

	select {
	case err := <-errc:
		for _, l := range listeners {
			l.Server.Close()
		}
		return fmt.Errorf("server stopped: %w", err)
	case <-ctx.Done():
	}
	rt.draining.Store(true)
	shutCtx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var errs []error
	for _, l := range listeners {
		if err := l.Server.Shutdown(shutCtx); err != nil {
			errs = append(errs, fmt.Errorf("drain %s: %w", l.Name, err))
		}
	}
	rt.Log.Info("stopped")
	return errors.Join(errs...)
}

// HealthMux serves /healthz (process alive), /readyz (identity valid, dependencies up, not
// draining) and /metrics: this port is plain HTTP and must expose no business data. A binary
// may add public material to it (the edge adds its JWKS for istiod, which has no sidecar).
func (rt *Runtime) HealthMux(ready ...func(context.Context) error) *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok\n")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if err := rt.Ready(r.Context(), ready...); err != nil {
			http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, "ready\n")
	})
	mux.Handle("GET /metrics", promhttp.Handler())
	return mux
}

// Ready runs the readiness checks.
func (rt *Runtime) Ready(ctx context.Context, checks ...func(context.Context) error) error {
	if rt.draining.Load() {
		return errors.New("draining")
	}
	if rt.Source != nil {
		if err := rt.Source.Ready(); err != nil {
			return err
		}
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	for _, c := range checks {
		if err := c(ctx); err != nil {
			return err
		}
	}
	return nil
}

// handshakeLog turns net/http's TLS handshake error lines into a counter and a structured
// log line. Refusals by the allowlist are counted where they happen, so they are skipped.
type handshakeLog struct{ log *slog.Logger }

func (h handshakeLog) Write(p []byte) (int, error) {
	line := strings.TrimSpace(string(p))
	if strings.Contains(line, "TLS handshake error") {
		reason, counted := "other", false
		switch {
		case strings.Contains(line, transport.ErrPeerNotAllowed.Error()):
			reason, counted = "not_allowed", true
		case strings.Contains(line, "certificate required"), strings.Contains(line, "didn't provide a certificate"):
			reason = "no_certificate"
		case strings.Contains(line, "x509"), strings.Contains(line, "certificate"):
			reason = "bad_certificate"
		case strings.Contains(line, "EOF"), strings.Contains(line, "connection reset"):
			reason = "aborted"
		}
		if !counted {
			transport.HandshakeFailures().WithLabelValues(reason).Inc()
		}
		h.log.Warn("mTLS handshake refused", "reason", reason, "detail", line)
		return len(p), nil
	}
	h.log.Warn(line)
	return len(p), nil
}

// Peers returns clients for every workload this service may call, in topology order.
func (rt *Runtime) Peers(opts ...transport.ClientOption) ([]*Peer, error) {
	var out []*Peer
	for _, name := range rt.Self.Calls {
		p, err := rt.Peer(name, opts...)
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, nil
}
