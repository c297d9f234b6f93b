// Package config is the edge binary's whole configuration, read from its environment in one
// place: the shared service part (libs/server) and the edge's own settings. main uses Load;
// the deploy contract test (tests/contract) runs the same Load on the environment every
// manifest gives the container, and docs/configuration.md is generated from Vars.
package config

import (
	"errors"
	"fmt"
	"math"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ztbank/ztbank/libs/envvar"
	"github.com/ztbank/ztbank/libs/server"
	"github.com/ztbank/ztbank/libs/topology"
	"github.com/ztbank/ztbank/libs/transport"
	"github.com/ztbank/ztbank/libs/usertoken"
)

// Service is the binary's name.
const Service = "edge"

// EdgeVars declares the edge's own variables.
var EdgeVars = []envvar.Var{
	{Name: "EDGE_PUBLIC_LISTEN", Default: "ZTBANK_PUBLIC_LISTEN, else the topology's public address", Doc: "the client-facing listener (HTTPS with EDGE_TLS_CERT, else plain HTTP behind the mesh)."},
	{Name: "ZTBANK_PUBLIC_LISTEN", Default: "the topology's public address", Doc: "older name of EDGE_PUBLIC_LISTEN."},
	{Name: "EDGE_TLS_CERT", Doc: "PEM certificate of the public listener, reloaded when it changes (required in direct mode)."},
	{Name: "EDGE_TLS_KEY", Doc: "PEM key of EDGE_TLS_CERT."},
	{Name: "EDGE_ISSUERS", Default: "ZTBANK_OIDC_ISSUER for every tenant", Doc: "trusted OIDC issuers, tenant=issuer-URL pairs, comma-separated; a tenant may appear more than once. One of EDGE_ISSUERS and ZTBANK_OIDC_ISSUER is required."},
	{Name: "ZTBANK_OIDC_ISSUER", Doc: "one issuer trusted for every tenant (local stack, compose, kind); read only when EDGE_ISSUERS is unset."},
	{Name: "EDGE_ALLOW_HTTP_ISSUERS", Default: "false", Doc: "true permits plain-http issuers off loopback (a compose network or inside the mesh only)."},
	{Name: "EDGE_AUDIENCE", Default: "ztbank", Doc: "the aud external tokens must carry."},
	{Name: "EDGE_ENROLMENT", Doc: "how users map to platform users (required; the edge has no default): claims (tenant and user from each bank's IdP token) or the path of a JSON enrolment table (rows of key, tenant, user_id, roles; a row is reached only by a token from its tenant's issuer)."},
	{Name: "EDGE_ENROLMENT_CLAIM", Default: "email", Doc: "the claim a JSON enrolment table is keyed by."},
	{Name: "EDGE_OIDC_CA_FILE", Default: "the system roots only", Doc: "extra PEM roots for reaching the issuers (the dev CA locally)."},
	{Name: "EDGE_TOKEN_TTL", Default: "5m (also the maximum)", Doc: "lifetime of the internal JWTs the edge mints."},
	{Name: "EDGE_KEY_ROTATION", Default: "1h", Doc: "how often the internal-JWT signing key changes."},
	{Name: "EDGE_KEY_OVERLAP", Default: "EDGE_TOKEN_TTL + 1m", Doc: "how long a retired key stays in the JWKS."},
	{Name: "EDGE_KEY_STORE", Default: "none: keys in this replica's memory (one replica only)", Doc: "where the signing keys every replica shares live (ADR 0985): dir:<path> (a directory shared by the replicas, compose) or secretsmanager:<secret name or ARN> (EKS; AWS SDK default credentials and region, endpoint from AWS_ENDPOINT_URL_SECRETS_MANAGER or AWS_ENDPOINT_URL)."},
	{Name: "EDGE_KEY_STORE_ENDPOINT", Default: "the SDK's regional endpoint", Doc: "Secrets Manager endpoint URL for a secretsmanager: key store (a VPC endpoint)."},
	{Name: "EDGE_KEY_STORE_REGION", Default: "the SDK's (AWS_REGION)", Doc: "AWS region of a secretsmanager: key store."},
	{Name: "EDGE_KEY_REFRESH", Default: "10s", Doc: "how often a replica re-reads EDGE_KEY_STORE; a view older than three refreshes neither signs nor publishes."},
	{Name: "EDGE_KEY_PUBLISH_AHEAD", Default: "1m", Doc: "how long a new key is published before any replica signs with it; at least three refreshes plus 5s (the verifiers' minimum refetch interval)."},
	{Name: "EDGE_AUTHZ_PREFIX", Default: "/authz", Doc: "the Emissary AuthService path_prefix of the ext_authz endpoint."},
	{Name: "EDGE_MAX_HEADER_BYTES", Default: "16384", Doc: "request header limit, answered with problem+json."},
	{Name: "EDGE_MAX_BODY_BYTES", Default: "1048576", Doc: "request body limit."},
	{Name: "EDGE_RATE_PER_USER", Default: "20", Doc: "requests per second one user may make through the edge, sustained (token bucket); more are answered 429 problem+json with Retry-After. 0 disables it."},
	{Name: "EDGE_BURST_PER_USER", Default: "40", Doc: "requests one user may make at once above EDGE_RATE_PER_USER."},
	{Name: "EDGE_RATE_PER_TENANT", Default: "400", Doc: "requests per second all users of one tenant may make through the edge together; more are answered 429. 0 disables it. The per-tenant concurrency limit is ZTBANK_TENANT_CONCURRENCY."},
	{Name: "EDGE_BURST_PER_TENANT", Default: "800", Doc: "requests one tenant's users may make at once above EDGE_RATE_PER_TENANT."},
}

// Vars declares every variable the binary reads.
var Vars = envvar.Join(server.Vars, EdgeVars)

// Config is the binary's configuration.
type Config struct {
	Server server.Config
	Edge   Edge
	// Read lists every variable the loader read, set or not.
	Read []string
}

// Load reads and checks the configuration; an error is one line naming every variable at fault.
func Load(getenv func(string) string) (Config, error) {
	r := envvar.NewReader(getenv, Vars)
	srv, err := server.LoadConfig(Service, r, server.DefaultWorkload("edge"))
	if err != nil {
		return Config{}, err
	}
	e, err := loadEdge(r.Get, srv.Topology)
	if err != nil {
		return Config{}, err
	}
	if e.TLSCert == "" && srv.Mode == transport.Direct {
		return Config{}, errors.New("EDGE_TLS_CERT and EDGE_TLS_KEY are required in direct mode (the public listener serves HTTPS)")
	}
	return Config{Server: srv, Edge: e, Read: r.Read()}, r.Err()
}

// Edge is the edge's own configuration; the workload identity, transport mode and
// topology come from the shared service configuration (libs/server).
type Edge struct {
	PublicListen     string              // EDGE_PUBLIC_LISTEN (or ZTBANK_PUBLIC_LISTEN); default: the topology's public address
	TLSCert          string              // EDGE_TLS_CERT: client-facing certificate (dev CA locally)
	TLSKey           string              // EDGE_TLS_KEY
	Issuers          map[string][]string // EDGE_ISSUERS: tenant=issuer-URL pairs, comma-separated; or ZTBANK_OIDC_ISSUER for every tenant
	AllowHTTP        bool                // EDGE_ALLOW_HTTP_ISSUERS: permit plain-http issuers off loopback (compose network only)
	Audience         string              // EDGE_AUDIENCE: required aud of external tokens; default ztbank
	Enrolment        string              // EDGE_ENROLMENT: "claims" or a JSON table path; required
	EnrolmentClaim   string              // EDGE_ENROLMENT_CLAIM: table key claim; default email
	OIDCCAFile       string              // EDGE_OIDC_CA_FILE: extra roots for reaching the providers
	TokenTTL         time.Duration       // EDGE_TOKEN_TTL; default and maximum 5m
	KeyRotation      time.Duration       // EDGE_KEY_ROTATION; default 1h
	KeyOverlap       time.Duration       // EDGE_KEY_OVERLAP; default TTL + 1m
	KeyStore         string              // EDGE_KEY_STORE: dir:<path> or secretsmanager:<id>; empty: in memory
	KeyStoreEndpoint string              // EDGE_KEY_STORE_ENDPOINT: Secrets Manager BaseEndpoint; empty: the SDK's
	KeyStoreRegion   string              // EDGE_KEY_STORE_REGION: Secrets Manager region; empty: the SDK's
	KeyRefresh       time.Duration       // EDGE_KEY_REFRESH; default 10s
	KeyAhead         time.Duration       // EDGE_KEY_PUBLISH_AHEAD; default 1m
	AuthzPrefix      string              // EDGE_AUTHZ_PREFIX: Emissary AuthService path_prefix; default /authz
	MaxHeaderBytes   int                 // EDGE_MAX_HEADER_BYTES; default 16384
	MaxBodyBytes     int64               // EDGE_MAX_BODY_BYTES; default 1048576
	UserRate         float64             // EDGE_RATE_PER_USER: requests/s per user; default 20, 0 off
	UserBurst        int                 // EDGE_BURST_PER_USER; default 40
	TenantRate       float64             // EDGE_RATE_PER_TENANT: requests/s per tenant; default 400, 0 off
	TenantBurst      int                 // EDGE_BURST_PER_TENANT; default 800
}

func loadEdge(getenv func(string) string, topo *topology.Topology) (Edge, error) {
	c := Edge{
		PublicListen:   or(getenv("EDGE_PUBLIC_LISTEN"), getenv("ZTBANK_PUBLIC_LISTEN")),
		TLSCert:        getenv("EDGE_TLS_CERT"),
		TLSKey:         getenv("EDGE_TLS_KEY"),
		Audience:       or(getenv("EDGE_AUDIENCE"), "ztbank"),
		Enrolment:      getenv("EDGE_ENROLMENT"),
		EnrolmentClaim: or(getenv("EDGE_ENROLMENT_CLAIM"), "email"),
		OIDCCAFile:     getenv("EDGE_OIDC_CA_FILE"),
		AuthzPrefix:    or(getenv("EDGE_AUTHZ_PREFIX"), "/authz"),
	}
	var errs []error
	dur := func(name string, def time.Duration) time.Duration {
		s := getenv(name)
		if s == "" {
			return def
		}
		d, err := time.ParseDuration(s)
		if err != nil || d <= 0 {
			errs = append(errs, fmt.Errorf("%s %q: want a positive duration like 5m", name, s))
			return def
		}
		return d
	}
	num := func(name string, def int64) int64 {
		s := getenv(name)
		if s == "" {
			return def
		}
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n <= 0 {
			errs = append(errs, fmt.Errorf("%s %q: want a positive integer", name, s))
			return def
		}
		return n
	}
	c.TokenTTL = dur("EDGE_TOKEN_TTL", usertoken.MaxTTL)
	c.KeyRotation = dur("EDGE_KEY_ROTATION", time.Hour)
	c.KeyOverlap = dur("EDGE_KEY_OVERLAP", c.TokenTTL+time.Minute)
	c.KeyStore = getenv("EDGE_KEY_STORE")
	c.KeyStoreEndpoint = getenv("EDGE_KEY_STORE_ENDPOINT")
	c.KeyStoreRegion = getenv("EDGE_KEY_STORE_REGION")
	c.KeyRefresh = dur("EDGE_KEY_REFRESH", 10*time.Second)
	c.KeyAhead = dur("EDGE_KEY_PUBLISH_AHEAD", time.Minute)
	if err := c.checkKeyStore(); err != nil {
		errs = append(errs, err)
	}
	c.MaxHeaderBytes = int(num("EDGE_MAX_HEADER_BYTES", 16<<10))
	c.MaxBodyBytes = num("EDGE_MAX_BODY_BYTES", 1<<20)
	rate := func(name string, def float64) float64 {
		s := getenv(name)
		if s == "" {
			return def
		}
		f, err := strconv.ParseFloat(s, 64)
		if err != nil || f < 0 || math.IsInf(f, 0) || math.IsNaN(f) {
			errs = append(errs, fmt.Errorf("%s %q: want requests per second, 0 for no limit", name, s))
			return def
		}
		return f
	}
	c.UserRate, c.UserBurst = rate("EDGE_RATE_PER_USER", 20), int(num("EDGE_BURST_PER_USER", 40))
	c.TenantRate, c.TenantBurst = rate("EDGE_RATE_PER_TENANT", 400), int(num("EDGE_BURST_PER_TENANT", 800))

	if edge, ok := topo.Workload("edge"); ok && c.PublicListen == "" {
		c.PublicListen = edge.Public
	}
	if c.PublicListen == "" {
		errs = append(errs, errors.New("EDGE_PUBLIC_LISTEN is not set and the topology has no public address for the edge"))
	}
	if c.Enrolment == "" {
		// No default: a deployed edge that silently mapped users through some built-in table
		// would enrol made-up users at a real bank. The local stacks point it at the table
		// the development provider writes.
		errs = append(errs, errors.New("EDGE_ENROLMENT is not set (claims, or the path of a JSON enrolment table)"))
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		errs = append(errs, errors.New("EDGE_TLS_CERT and EDGE_TLS_KEY must be set together"))
	}
	if !strings.HasPrefix(c.AuthzPrefix, "/") || strings.HasSuffix(c.AuthzPrefix, "/") {
		errs = append(errs, fmt.Errorf("EDGE_AUTHZ_PREFIX %q: want a path like /authz", c.AuthzPrefix))
	}
	switch v := getenv("EDGE_ALLOW_HTTP_ISSUERS"); v {
	case "", "false":
	case "true":
		c.AllowHTTP = true
	default:
		errs = append(errs, fmt.Errorf("EDGE_ALLOW_HTTP_ISSUERS %q: want true or false", v))
	}
	issuers := getenv("EDGE_ISSUERS")
	if issuers == "" && getenv("ZTBANK_OIDC_ISSUER") != "" {
		// One provider for every tenant, as in the local stack and compose.
		var pairs []string
		for _, t := range TenantNames(topo) {
			pairs = append(pairs, t+"="+getenv("ZTBANK_OIDC_ISSUER"))
		}
		issuers = strings.Join(pairs, ",")
	}
	iss, err := parseIssuers(issuers, TenantNames(topo), c.AllowHTTP)
	if err != nil {
		errs = append(errs, err)
	}
	c.Issuers = iss
	return c, oneLine(errs)
}

// VerifierRefetch is the verifiers' minimum interval between two JWKS fetches
// (libs/usertoken's default): publish-ahead must leave a verifier that fetched a key set
// just before a key appeared the time to fetch again before the key signs.
const VerifierRefetch = 5 * time.Second

// MaxStale is how old a replica's view of the key store may be before it stops signing and
// publishing: three refreshes, so one or two failed reads do not take it out.
func (c Edge) MaxStale() time.Duration { return 3 * c.KeyRefresh }

func (c Edge) checkKeyStore() error {
	if c.KeyStore == "" {
		return nil
	}
	kind, arg, _ := strings.Cut(c.KeyStore, ":")
	if (kind != "dir" && kind != "secretsmanager") || arg == "" {
		return fmt.Errorf("EDGE_KEY_STORE %q: want dir:<path> or secretsmanager:<secret>", c.KeyStore)
	}
	if c.KeyAhead < c.MaxStale()+VerifierRefetch {
		return fmt.Errorf("EDGE_KEY_PUBLISH_AHEAD %v: want at least three EDGE_KEY_REFRESH (%v) plus %v", c.KeyAhead, c.KeyRefresh, VerifierRefetch)
	}
	if c.KeyRotation <= c.KeyAhead {
		return fmt.Errorf("EDGE_KEY_ROTATION %v: want longer than EDGE_KEY_PUBLISH_AHEAD %v", c.KeyRotation, c.KeyAhead)
	}
	if c.KeyOverlap < c.TokenTTL {
		return fmt.Errorf("EDGE_KEY_OVERLAP %v: want at least EDGE_TOKEN_TTL %v", c.KeyOverlap, c.TokenTTL)
	}
	return nil
}

// parseIssuers reads "<tenant>=https://idp-1,<tenant>=https://idp-2". A tenant may appear more
// than once to trust several issuers.
func parseIssuers(s string, tenants []string, allowHTTP bool) (map[string][]string, error) {
	if strings.TrimSpace(s) == "" {
		return nil, errors.New("EDGE_ISSUERS is not set (tenant=issuer-URL pairs, comma-separated, one per tenant of the topology)")
	}
	out := map[string][]string{}
	for _, pair := range strings.Split(s, ",") {
		tenant, issuer, ok := strings.Cut(strings.TrimSpace(pair), "=")
		if !ok {
			return nil, fmt.Errorf("EDGE_ISSUERS entry %q: want tenant=issuer-url", pair)
		}
		if !slices.Contains(tenants, tenant) {
			return nil, fmt.Errorf("EDGE_ISSUERS entry %q: tenant %q is not in the topology", pair, tenant)
		}
		u, err := url.Parse(issuer)
		if err != nil || u.Host == "" || (u.Scheme != "https" && !(u.Scheme == "http" && (allowHTTP || isLoopback(u.Hostname())))) {
			return nil, fmt.Errorf("EDGE_ISSUERS entry %q: issuer must be an https URL (http only on loopback or with EDGE_ALLOW_HTTP_ISSUERS=true)", pair)
		}
		if !slices.Contains(out[tenant], issuer) {
			out[tenant] = append(out[tenant], issuer)
		}
	}
	return out, nil
}

func isLoopback(host string) bool {
	return host == "localhost" || host == "127.0.0.1" || host == "::1"
}

// TenantNames lists the topology's tenants in file order.
func TenantNames(topo *topology.Topology) []string {
	var out []string
	for _, t := range topo.Tenants {
		out = append(out, t.Name)
	}
	return out
}

// AllIssuers returns every configured issuer once, in a stable order.
func (c Edge) AllIssuers() []string {
	var out []string
	for _, list := range c.Issuers {
		for _, iss := range list {
			if !slices.Contains(out, iss) {
				out = append(out, iss)
			}
		}
	}
	slices.Sort(out)
	return out
}

func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// oneLine joins errs with "; " so a refusal to start stays one log line.
func oneLine(errs []error) error {
	if len(errs) == 0 {
		return nil
	}
	msgs := make([]string, len(errs))
	for i, err := range errs {
		msgs[i] = err.Error()
	}
	return errors.New(strings.Join(msgs, "; "))
}
