package server

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/ztbank/ztbank/libs/authz"
	"github.com/ztbank/ztbank/libs/envvar"
	"github.com/ztbank/ztbank/libs/telemetry"
	"github.com/ztbank/ztbank/libs/topology"
	"github.com/ztbank/ztbank/libs/transport"
)

// Vars declares the variables every service reads through LoadConfig (its own and
// tracing's). Tenant workloads also read the test-only policy override: TenantVars.
var Vars = envvar.Join([]envvar.Var{
	{Name: "ZTBANK_WORKLOAD", Doc: "the topology workload this process is, named tenant/service for a tenant service (required; the edge defaults to edge)."},
	{Name: "ZTBANK_TOPOLOGY", Default: "the topology compiled into the binary", Doc: "path of a topology file to use instead."},
	{Name: "ZTBANK_TRANSPORT_MODE", Default: "direct", Doc: "direct (the service terminates mTLS with its SVID) or mesh (a sidecar does; the caller comes from XFCC)."},
	{Name: "SPIFFE_ENDPOINT_SOCKET", Doc: "the SPIRE agent's Workload API socket, e.g. unix:///run/spire/agent.sock (required in direct mode, not read in mesh mode)."},
	{Name: "ZTBANK_LISTEN", Default: "the workload's topology listen address", Doc: "API listener (mTLS in direct mode, plain HTTP behind the sidecar in mesh mode)."},
	{Name: "ZTBANK_HEALTH_LISTEN", Default: "the workload's topology health address", Doc: "plain listener for /healthz, /readyz and /metrics."},
	{Name: "ZTBANK_PEER_URL_TEMPLATE", Default: "https://{listen} in direct mode; required in mesh mode", Doc: "base URL of a peer, with {service} {namespace} {tenant} {listen} expanded from the topology, e.g. http://{service}.{namespace}.svc.cluster.local:8443."},
	{Name: "ZTBANK_PEER_ADDR_*", Default: "the peer's topology listen address", Doc: "{listen} of one peer, suffix = the workload name upper-cased with / and - as _ (ZTBANK_PEER_ADDR_BANK_A_USER); the local stack sets them when it runs on free ports."},
	{Name: "ZTBANK_LOG_LEVEL", Default: "info", Doc: "debug, info, warn or error."},
	{Name: "ZTBANK_SVID_TIMEOUT", Default: "30s", Doc: "how long start-up waits for the first SVID (direct mode)."},
	{Name: "ZTBANK_TENANT_CONCURRENCY", Default: "64", Doc: "requests one tenant may have in flight in this process (the edge: per tenant across its users; a tenant service: its tenant's); more are answered 429 problem+json with Retry-After at once, never queued. 0 disables the limit."},
}, telemetry.Vars)

// TenantVars declares what LoadConfig reads for a tenant workload: Vars and authz.Vars.
var TenantVars = envvar.Join(Vars, authz.Vars)

// Config is the configuration every service shares, read and checked in one place
// (LoadConfig) before anything starts.
type Config struct {
	Env
	Service  string // the binary, e.g. "account"
	Topology *topology.Topology
	Self     topology.Workload
	Tracing  telemetry.Settings
	// Authz are the test-only policy overrides (none in a deployment).
	Authz []authz.Option
	// PeerAddrs overrides {listen} per peer workload (ZTBANK_PEER_ADDR_*).
	PeerAddrs map[string]string
	// TenantConcurrency bounds one tenant's requests in flight (ZTBANK_TENANT_CONCURRENCY).
	TenantConcurrency int
}

// DefaultTenantConcurrency is ZTBANK_TENANT_CONCURRENCY's default.
const DefaultTenantConcurrency = 64

// Option changes how LoadConfig reads the environment.
type Option func(*loadOptions)

type loadOptions struct{ defaultWorkload string }

// DefaultWorkload names the workload when ZTBANK_WORKLOAD is unset, for binaries that are
// exactly one workload (the edge).
func DefaultWorkload(name string) Option { return func(o *loadOptions) { o.defaultWorkload = name } }

// LoadConfig reads and checks the shared service configuration for the binary service. Every
// variable it reads goes through r, so the caller knows what was read. Errors are one line
// naming the variable to fix.
func LoadConfig(service string, r *envvar.Reader, opts ...Option) (Config, error) {
	var o loadOptions
	for _, opt := range opts {
		opt(&o)
	}
	env, err := loadEnv(r.Get, o.defaultWorkload)
	if err != nil {
		return Config{}, err
	}
	c := Config{Env: env, Service: service}
	c.Topology, err = topology.Load(env.TopologyPath)
	if err != nil {
		return Config{}, fmt.Errorf("ZTBANK_TOPOLOGY: %w", err)
	}
	self, ok := c.Topology.Workload(env.Workload)
	if !ok {
		return Config{}, fmt.Errorf("ZTBANK_WORKLOAD %q is not in the topology", env.Workload)
	}
	if self.Service != service {
		return Config{}, fmt.Errorf("ZTBANK_WORKLOAD %q runs service %q, but this binary is %q", env.Workload, self.Service, service)
	}
	c.Self = self
	if c.Listen == "" {
		c.Listen = self.Listen
	}
	if c.HealthListen == "" {
		c.HealthListen = self.Health
	}
	if c.Tracing, err = telemetry.Load(r.Get); err != nil {
		return Config{}, err
	}
	// Tenant workloads authorise every request with the embedded policy; only they read the
	// test-only override.
	if self.Tenant != "" {
		if c.Authz, err = authz.OptionsFromEnv(r.Get); err != nil {
			return Config{}, err
		}
	}
	c.TenantConcurrency = DefaultTenantConcurrency
	if s := r.Get("ZTBANK_TENANT_CONCURRENCY"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 {
			return Config{}, fmt.Errorf("ZTBANK_TENANT_CONCURRENCY %q: want a whole number of requests, 0 for no limit", s)
		}
		c.TenantConcurrency = n
	}
	c.PeerAddrs = map[string]string{}
	for _, w := range c.Topology.Workloads {
		if !c.Topology.MayCall(self.Name, w.Name) && !(w.Name == "edge" && self.Tenant != "") {
			continue
		}
		if a := r.Get(PeerAddrVar(w.Name)); a != "" {
			c.PeerAddrs[w.Name] = a
		}
	}
	return c, r.Err()
}

// PeerAddrVar is the variable that overrides a peer workload's {listen} address.
func PeerAddrVar(workload string) string {
	return "ZTBANK_PEER_ADDR_" + strings.ToUpper(strings.NewReplacer("/", "_", "-", "_").Replace(workload))
}

// loadEnv reads Env, reading only what the chosen mode uses, so a deployment that sets a
// variable the mode ignores shows up as an unread variable in the deploy contract.
func loadEnv(getenv func(string) string, defaultWorkload string) (Env, error) {
	e := Env{
		Workload:     getenv("ZTBANK_WORKLOAD"),
		TopologyPath: getenv("ZTBANK_TOPOLOGY"),
		Listen:       getenv("ZTBANK_LISTEN"),
		HealthListen: getenv("ZTBANK_HEALTH_LISTEN"),
		PeerURL:      getenv("ZTBANK_PEER_URL_TEMPLATE"),
		LogLevel:     getenv("ZTBANK_LOG_LEVEL"),
		StartTimeout: 30 * time.Second,
	}
	if e.Workload == "" {
		e.Workload = defaultWorkload
	}
	if e.Workload == "" {
		return e, errors.New("ZTBANK_WORKLOAD is not set (a topology workload, named tenant/service)")
	}
	switch strings.ToLower(e.LogLevel) {
	case "", "debug", "info", "warn", "error":
	default:
		return e, fmt.Errorf("ZTBANK_LOG_LEVEL %q: want debug, info, warn or error", e.LogLevel)
	}
	m, err := transport.ParseMode(getenv("ZTBANK_TRANSPORT_MODE"))
	if err != nil {
		return e, fmt.Errorf("ZTBANK_TRANSPORT_MODE: %w", err)
	}
	e.Mode = m
	if e.Mode == transport.Mesh {
		// In a mesh only the sidecar knows the peers' Service ports; a built-in default was
		// wrong once (:8080 against Services on 8443), so the deployment must say it.
		if e.PeerURL == "" {
			return e, errors.New("ZTBANK_PEER_URL_TEMPLATE is not set (mesh mode needs the peers' in-cluster URL, e.g. http://{service}.{namespace}.svc.cluster.local:8443)")
		}
	} else {
		e.Socket = getenv("SPIFFE_ENDPOINT_SOCKET")
		if e.Socket == "" {
			return e, errors.New("SPIFFE_ENDPOINT_SOCKET is not set (direct mode needs the SPIRE agent's socket, e.g. unix:///run/spire/agent.sock)")
		}
		if s := getenv("ZTBANK_SVID_TIMEOUT"); s != "" {
			d, err := time.ParseDuration(s)
			if err != nil || d <= 0 {
				return e, fmt.Errorf("ZTBANK_SVID_TIMEOUT %q: want a positive duration like 30s", s)
			}
			e.StartTimeout = d
		}
		if e.PeerURL == "" {
			e.PeerURL = "https://{listen}"
		}
	}
	if !strings.Contains(e.PeerURL, "://") {
		return e, fmt.Errorf("ZTBANK_PEER_URL_TEMPLATE %q: want a URL like https://{listen}", e.PeerURL)
	}
	return e, nil
}
