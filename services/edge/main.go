// Command edge is the ztbank edge: it verifies clients' external OIDC tokens, maps each user
// to a tenant and a user SPIFFE ID, and exchanges the token for a short-lived internal JWT.
// One exchange core serves two front ends: a reverse proxy to the tenant gateways (local and
// compose runs) and an Emissary AuthService / ext_authz endpoint (Kubernetes).
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/ztbank/ztbank/libs/server"
	"github.com/ztbank/ztbank/libs/topology"
	"github.com/ztbank/ztbank/libs/transport"
	"github.com/ztbank/ztbank/libs/usertoken"
	"github.com/ztbank/ztbank/services/edge/config"
	"github.com/ztbank/ztbank/services/edge/enrol"
	"github.com/ztbank/ztbank/services/edge/exchange"
	"github.com/ztbank/ztbank/services/edge/extoken"
	"github.com/ztbank/ztbank/services/edge/keys"
)

func main() { server.Main(config.Service, run) }

// run wires the edge from its environment and blocks until ctx is done. Tests call it
// directly with their own getenv and a cancellable ctx. The edge runs on the same
// scaffolding as every service (server.RunListeners: healthcheck subcommand, set-up,
// serve/drain); it differs only in its listeners: public (clients, ext_authz), internal
// (mTLS, JWKS for any workload of the trust domain) and health (plus the JWKS for istiod).
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) > 1 && args[1] == "keys" {
		return keysCommand(args[2:], stdout, stderr)
	}
	conf, err := config.Load(getenv)
	if err != nil {
		return err
	}
	return server.RunListeners(ctx, conf.Server, args, stderr, func(ctx context.Context, rt *server.Runtime) ([]server.Listener, error) {
		return listeners(ctx, rt, conf.Edge, stdout)
	})
}

// listeners builds the edge's exchange core and its three listeners.
func listeners(ctx context.Context, rt *server.Runtime, cfg config.Edge, stdout io.Writer) ([]server.Listener, error) {
	minterOpts := []usertoken.Option{usertoken.WithTTL(cfg.TokenTTL), usertoken.WithRotation(cfg.KeyRotation, cfg.KeyOverlap)}
	var ready []func(context.Context) error
	if cfg.KeyStore != "" {
		ring, err := keyRing(ctx, cfg, rt)
		if err != nil {
			return nil, err
		}
		minterOpts = append(minterOpts, usertoken.WithKeyRing(ring))
		// Not ready until a key signs (publish-ahead on an empty store) and while the view of
		// the store is too old to sign: the balancer then sends clients to a replica that can.
		ready = append(ready, func(context.Context) error { return ring.Ready() })
	}
	minter, err := usertoken.NewIssuer(rt.Self.ID, minterOpts...)
	if err != nil {
		return nil, err
	}
	oidcClient, err := providerClient(cfg.OIDCCAFile)
	if err != nil {
		return nil, err
	}
	ext, err := extoken.New(cfg.AllIssuers(), cfg.Audience, oidcClient, extoken.WithLogger(rt.Log))
	if err != nil {
		return nil, err
	}
	mapper, err := newMapper(cfg)
	if err != nil {
		return nil, err
	}
	exOpts := []exchange.Option{exchange.WithLogger(rt.Log)}
	if rt.Env.Mode == transport.Mesh {
		exOpts = append(exOpts, exchange.WithIdentityHeaders(exchange.HeaderSpiffeID))
	}
	d := deps{
		Log:            rt.Log,
		Exchanger:      exchange.New(ext, mapper, cfg.Issuers, minter, exOpts...),
		Minter:         minter,
		Upstreams:      map[string]upstream{},
		Tenants:        tenantNames(rt.Topology),
		AuthzPrefix:    cfg.AuthzPrefix,
		MaxHeaderBytes: cfg.MaxHeaderBytes,
		MaxBodyBytes:   cfg.MaxBodyBytes,
		Limits: &Limits{User: server.NewRateLimiter(cfg.UserRate, cfg.UserBurst, nil),
			Tenant:   server.NewRateLimiter(cfg.TenantRate, cfg.TenantBurst, nil),
			InFlight: server.NewConcurrency(rt.Config.TenantConcurrency)},
	}
	for _, tenant := range d.Tenants {
		// Each tenant's way in, resolved from the topology by role.
		w, ok := rt.Topology.TenantWorkload(tenant, topology.EntryService)
		if !ok {
			return nil, fmt.Errorf("tenant %s runs no %s", tenant, topology.EntryService)
		}
		p, err := rt.Peer(w.Name, transport.WithTimeout(30*time.Second))
		if err != nil {
			return nil, fmt.Errorf("gateway of %s: %w", tenant, err)
		}
		u, err := url.Parse(p.BaseURL)
		if err != nil {
			return nil, fmt.Errorf("gateway URL %q: %w", p.BaseURL, err)
		}
		d.Upstreams[tenant] = upstream{URL: u, Transport: p.Client.Transport, ID: w.ID}
	}

	// The edge starts the trace for every client request; each hop behind it continues it.
	d.AuthzCaller = authzCaller(rt)
	public := newHTTPServer(ctx, NewPublicHandler(d), rt)
	if cfg.TLSCert != "" {
		certs, err := newCertReloader(cfg.TLSCert, cfg.TLSKey)
		if err != nil {
			return nil, err
		}
		public.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: certs.get}
		if rt.Env.Mode == transport.Direct {
			// Clients need no certificate; one that is presented must be an SVID of our trust
			// domain. That is how the ext_authz endpoint knows its caller without a mesh.
			public.TLSConfig.ClientAuth = tls.RequestClientCert
			public.TLSConfig.VerifyPeerCertificate = func(raw [][]byte, _ [][]*x509.Certificate) error {
				if len(raw) == 0 {
					return nil
				}
				_, _, err := x509svid.ParseAndVerify(raw, rt.Source)
				return err
			}
		}
	}
	internal := newHTTPServer(ctx, rt.FailClosed(NewInternalServer(d)), rt)
	if rt.Env.Mode == transport.Direct {
		internal.TLSConfig = transport.ServerTLSAnyMember(rt.Source, rt.Topology.TrustDomain)
	}
	// istiod has no sidecar and cannot fetch keys over mTLS, so the internal-JWT key set
	// (public key material only) is also served on the plain health port for Istio's
	// RequestAuthentication.
	healthMux := rt.HealthMux(ready...)
	healthMux.Handle("GET /.well-known/jwks.json", minter.JWKSHandler())
	fmt.Fprintf(stdout, "edge: public %s, jwks %s/.well-known/jwks.json, issuers %v\n", cfg.PublicListen, rt.Env.Listen, cfg.AllIssuers())
	return []server.Listener{
		{Name: "public", Addr: cfg.PublicListen, Server: public},
		{Name: "internal", Addr: rt.Env.Listen, Server: internal},
		{Name: "health", Addr: rt.Env.HealthListen, Server: &http.Server{Handler: healthMux, ReadHeaderTimeout: 5 * time.Second}},
	}, nil
}

// keyRing opens the shared signing-key store (ADR 0985), reads it once so the edge starts
// with the replicas' keys (or writes the first one), and keeps re-reading it until ctx ends.
func keyRing(ctx context.Context, cfg config.Edge, rt *server.Runtime) (*keys.Ring, error) {
	store, err := keys.Open(ctx, cfg.KeyStore, cfg.KeyStoreEndpoint, cfg.KeyStoreRegion)
	if err != nil {
		return nil, fmt.Errorf("EDGE_KEY_STORE: %w", err)
	}
	ring, err := keys.New(store, keys.Schedule{Rotation: cfg.KeyRotation, PublishAhead: cfg.KeyAhead,
		Overlap: cfg.KeyOverlap, Refresh: cfg.KeyRefresh, MaxStale: cfg.MaxStale()}, time.Now, rt.Log)
	if err != nil {
		return nil, err
	}
	if err := ring.Sync(ctx); err != nil {
		return nil, fmt.Errorf("EDGE_KEY_STORE: %w", err)
	}
	go ring.Run(ctx)
	return ring, nil
}

// keysCommand generates a key document ahead, for a store the edge cannot write (a
// Kubernetes Secret on kind): edge keys [-in current.json] [-for 720h] [-rotation 24h]
// [-not-before 10m] prints the document extended to cover the period.
func keysCommand(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("edge keys", flag.ContinueOnError)
	fs.SetOutput(stderr)
	in := fs.String("in", "", "current key document to extend (`file`; default: none)")
	period := fs.Duration("for", 30*24*time.Hour, "how long from now the keys must last")
	rotation := fs.Duration("rotation", 24*time.Hour, "how long each key signs")
	notBefore := fs.Duration("not-before", 0, "earliest activation of a new key from now: at least the time the replicas take to see the new document (kubelet Secret sync, about 1m)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var doc keys.Doc
	if *in != "" {
		b, err := os.ReadFile(*in)
		if err != nil {
			return err
		}
		if err := json.Unmarshal(b, &doc); err != nil {
			return fmt.Errorf("%s: %w", *in, err)
		}
	}
	now := time.Now()
	doc, err := keys.Extend(doc, now.Add(*notBefore), now.Add(*period), *rotation)
	if err != nil {
		return err
	}
	b, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(stdout, "%s\n", b)
	return err
}

// newHTTPServer is the platform's API server with the edge's longer limits: it proxies to
// the gateways (30s per upstream call) and answers oversized headers with problem+json
// below net/http's hard limit.
func newHTTPServer(ctx context.Context, h http.Handler, rt *server.Runtime) *http.Server {
	srv := rt.NewHTTPServer(ctx, h)
	srv.ReadTimeout = 30 * time.Second
	srv.WriteTimeout = 60 * time.Second
	// The hard limit; the edge's own, lower limit answers with problem+json first.
	srv.MaxHeaderBytes = 64 << 10
	return srv
}

// newMapper maps users through the tenants' own issuers: from the tokens' claims, or through
// an enrolment table file (the local stacks write theirs from the demo users; the edge
// itself knows no users).
func newMapper(cfg config.Edge) (enrol.Mapper, error) {
	if cfg.Enrolment == "claims" {
		return enrol.Claims{Issuers: cfg.Issuers}, nil
	}
	return enrol.LoadTable(cfg.Enrolment, cfg.EnrolmentClaim, cfg.Issuers)
}

// providerClient is the client for OIDC discovery and JWKS, trusting the system roots plus
// the optional CA file (the dev CA locally).
func providerClient(caFile string) (*http.Client, error) {
	t := http.DefaultTransport.(*http.Transport).Clone()
	if caFile != "" {
		pool, err := x509.SystemCertPool()
		if err != nil {
			pool = x509.NewCertPool()
		}
		if err := transport.AddCAFile(pool, caFile); err != nil {
			return nil, fmt.Errorf("EDGE_OIDC_CA_FILE: %w", err)
		}
		t.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	return &http.Client{Transport: t, Timeout: 10 * time.Second}, nil
}

// certReloader serves the public certificate and reloads it when the files change, because
// the dev CA issues day-long leaves and the stack renews them under a running edge.
type certReloader struct {
	certFile, keyFile string

	mu      sync.Mutex
	cert    *tls.Certificate
	modTime time.Time
	checked time.Time
}

func newCertReloader(certFile, keyFile string) (*certReloader, error) {
	c := &certReloader{certFile: certFile, keyFile: keyFile}
	if _, err := c.get(nil); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *certReloader) get(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cert != nil && time.Since(c.checked) < 10*time.Second {
		return c.cert, nil
	}
	c.checked = time.Now()
	fi, err := os.Stat(c.certFile)
	if err == nil && c.cert != nil && !fi.ModTime().After(c.modTime) {
		return c.cert, nil
	}
	cert, lerr := tls.LoadX509KeyPair(c.certFile, c.keyFile)
	if lerr != nil {
		if c.cert != nil {
			return c.cert, nil // keep serving the last good pair while files are mid-write
		}
		return nil, fmt.Errorf("load public certificate: %w", lerr)
	}
	c.cert = &cert
	if fi != nil {
		c.modTime = fi.ModTime()
	}
	return c.cert, nil
}

// authzCaller admits to the ext_authz endpoint only the workloads the topology lets call the
// edge (the ingress), identified by their verified SVID in direct mode or by the last XFCC
// element (our sidecar's) in mesh mode.
func authzCaller(rt *server.Runtime) func(*http.Request) error {
	allowed := rt.Topology.AllowedCallers(rt.Self.Name)
	return func(r *http.Request) error {
		id, err := transport.PeerID(rt.Env.Mode, r)
		if err != nil {
			return err
		}
		if !slices.Contains(allowed, id) {
			return fmt.Errorf("%s may not use ext_authz", id)
		}
		return nil
	}
}

func tenantNames(topo *topology.Topology) []string { return config.TenantNames(topo) }
