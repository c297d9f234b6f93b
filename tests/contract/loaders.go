// Package contract checks the deploy contract: for every container in every rendering of the
// deployment (the kind and eks kustomize overlays, docker-compose.yml) the environment the
// manifests give it goes through the binary's own configuration loader (the function its main
// calls) and loads; every address it dials resolves to a Service (or compose service) and a
// port that reaches the intended process; every Secret, ConfigMap, ServiceAccount, volume and
// mounted path it refers to exists in the same rendering; and every variable a manifest sets
// is one the binary reads.
package contract

import (
	"net"
	"regexp"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/ztbank/ztbank/libs/dbcred"
	"github.com/ztbank/ztbank/libs/envvar"
	"github.com/ztbank/ztbank/libs/server"
	"github.com/ztbank/ztbank/libs/transport"
	accountcfg "github.com/ztbank/ztbank/services/account/config"
	edgecfg "github.com/ztbank/ztbank/services/edge/config"
	gatewaycfg "github.com/ztbank/ztbank/services/gateway/config"
	ledgercfg "github.com/ztbank/ztbank/services/ledger/config"
	paymentcfg "github.com/ztbank/ztbank/services/payment/config"
	usercfg "github.com/ztbank/ztbank/services/user/config"
	dbadmincfg "github.com/ztbank/ztbank/tools/dbadmin/config"
	devoidccfg "github.com/ztbank/ztbank/tools/devoidc/config"
)

// Loaded is what a binary's loader returned, reduced to what the contract checks.
type Loaded struct {
	Read    []string
	Server  *server.Config     // the six services
	DB      *dbcred.EnvConfig  // services with a database
	Edge    *edgecfg.Edge      // the edge
	Devoidc *devoidccfg.Config // the dev OIDC provider
	DBAdmin *dbadmincfg.Config // migrations and password rotation
}

// Binary is one of our binaries: its loader and its declared variables.
type Binary struct {
	Name    string
	Summary string
	Vars    []envvar.Var
	Load    func(getenv func(string) string) (Loaded, error)
}

func dbService(name string, load func(func(string) string) (accountcfg.Config, error)) Binary {
	return Binary{Name: name, Vars: accountcfg.Vars,
		Summary: "The " + name + " service (one binary for every tenant that runs it): the shared service variables and its database.",
		Load: func(getenv func(string) string) (Loaded, error) {
			c, err := load(getenv)
			return Loaded{Read: c.Read, Server: &c.Server, DB: &c.DB}, err
		}}
}

// Binaries are every binary a rendering may run, in documentation order.
var Binaries = []Binary{
	{Name: "edge", Vars: edgecfg.Vars,
		Summary: "The edge: OIDC token exchange, reverse proxy and ext_authz. The shared service variables plus its own EDGE_* settings.",
		Load: func(getenv func(string) string) (Loaded, error) {
			c, err := edgecfg.Load(getenv)
			return Loaded{Read: c.Read, Server: &c.Server, Edge: &c.Edge}, err
		}},
	{Name: "gateway", Vars: gatewaycfg.Vars,
		Summary: "The tenant gateway (one binary for every tenant): the shared service variables, no database.",
		Load: func(getenv func(string) string) (Loaded, error) {
			c, err := gatewaycfg.Load(getenv)
			return Loaded{Read: c.Read, Server: &c.Server}, err
		}},
	dbService("user", usercfg.Load),
	dbService("account", accountcfg.Load),
	{Name: "payment", Vars: paymentcfg.Vars,
		Summary: "The payment service: the shared service variables, its database, and its pending-payment recovery.",
		Load: func(getenv func(string) string) (Loaded, error) {
			c, err := paymentcfg.Load(getenv)
			return Loaded{Read: c.Read, Server: &c.Server, DB: &c.DB}, err
		}},
	dbService("ledger", ledgercfg.Load),
	{Name: "dbadmin", Vars: dbadmincfg.Vars,
		Summary: "Migrations, demo seed and password rotation (`dbadmin migrate up|down`, `seed`, `rotate`). Flags override the environment.",
		Load: func(getenv func(string) string) (Loaded, error) {
			c, err := dbadmincfg.Load(getenv)
			return Loaded{Read: c.Read, DBAdmin: &c}, err
		}},
	{Name: "devoidc", Vars: devoidccfg.Vars,
		Summary: "The development OIDC provider (local stack, compose and kind only; never deployed to EKS). Flags override the environment.",
		Load: func(getenv func(string) string) (Loaded, error) {
			c, err := devoidccfg.Load(getenv)
			return Loaded{Read: c.Read, Devoidc: &c}, err
		}},
}

// binaryOf maps an image to one of our binaries: ztbank/<name>[:tag] under any registry.
// Images that are not ours (SPIRE, PostgreSQL, Istio) have no loader and return "".
func binaryOf(image string) string {
	m := imageRE.FindStringSubmatch(image)
	if m == nil {
		return ""
	}
	for _, b := range Binaries {
		if b.Name == m[1] {
			return b.Name
		}
	}
	return ""
}

var imageRE = regexp.MustCompile(`(?:^|/)ztbank/([a-z0-9-]+)(?:[:@].*)?$`)

func binaryNamed(name string) Binary {
	for _, b := range Binaries {
		if b.Name == name {
			return b
		}
	}
	panic("no binary " + name)
}

// Dial is one address a loaded container connects to, and what must answer there.
type Dial struct {
	What string // "peer bank-a/user", "JWKS", "OIDC issuer", "database"
	Host string
	Port int
	// Workload, when set, is the topology workload that must listen on the port reached.
	Workload string
	// Binary, when set, is the binary that must listen there (the OIDC provider).
	Binary string
	// External addresses may be outside the rendering (an IdP on the internet, RDS).
	External bool
	// Method and Path are the one request the dial makes, when it makes one (the JWKS,
	// OIDC discovery); empty for a peer, whose whole API is called.
	Method, Path string
	// UserToken is true when the requests carry a user's internal JWT (peer calls).
	UserToken bool
	// Health is true when Workload must answer on its health listener rather than its API
	// (istiod fetches the edge's JWKS there).
	Health bool
}

// dials lists the addresses a loaded container connects to.
func (l Loaded) dials() ([]Dial, []string) {
	var out []Dial
	var problems []string
	if s := l.Server; s != nil {
		for _, w := range s.Topology.Workloads {
			peer := s.Topology.MayCall(s.Self.Name, w.Name)
			jwks := w.Name == "edge" && s.Self.Tenant != ""
			if (!peer && !jwks) || w.External {
				continue
			}
			host, port, err := urlHostPort(s.PeerURLFor(w))
			if err != nil {
				problems = append(problems, w.Name+": "+err.Error())
				continue
			}
			if peer {
				out = append(out, Dial{What: "peer " + w.Name, Host: host, Port: port, Workload: w.Name, UserToken: true})
			}
			if jwks {
				out = append(out, Dial{What: "JWKS of " + w.Name, Host: host, Port: port, Workload: w.Name,
					Method: "GET", Path: "/.well-known/jwks.json"})
			}
		}
	}
	if s := l.Server; s != nil && s.Tracing.Exporter != "" {
		host, port, err := urlHostPort(s.Tracing.Endpoint)
		if err != nil {
			problems = append(problems, "OTLP endpoint: "+err.Error())
		} else {
			out = append(out, Dial{What: "OTLP collector", Host: host, Port: port})
		}
	}
	if e := l.Edge; e != nil {
		for _, iss := range e.AllIssuers() {
			host, port, err := urlHostPort(iss)
			if err != nil {
				problems = append(problems, "OIDC issuer: "+err.Error())
				continue
			}
			out = append(out, Dial{What: "OIDC issuer " + iss, Host: host, Port: port, Binary: "devoidc",
				External: strings.HasPrefix(iss, "https://") && externalHost(host),
				Method:   "GET", Path: "/.well-known/openid-configuration"})
		}
	}
	if d := l.DB; d != nil {
		if cfg, err := pgconn.ParseConfig(d.DSN); err == nil {
			out = append(out, Dial{What: "database", Host: cfg.Host, Port: int(cfg.Port)})
		}
	}
	if a := l.DBAdmin; a != nil && a.AdminDSN != "" {
		if cfg, err := pgconn.ParseConfig(a.AdminDSN); err == nil {
			out = append(out, Dial{What: "admin database", Host: cfg.Host, Port: int(cfg.Port)})
		}
	}
	return out, problems
}

// paths lists the files and directories a loaded container uses, by the variable naming them.
func (l Loaded) paths() map[string]string {
	out := map[string]string{}
	add := func(name, p string) {
		if p != "" {
			out[name] = p
		}
	}
	if s := l.Server; s != nil {
		add("ZTBANK_TOPOLOGY", s.TopologyPath)
		if s.Mode == transport.Direct {
			add("SPIFFE_ENDPOINT_SOCKET", strings.TrimPrefix(s.Socket, "unix://"))
		}
	}
	if d := l.DB; d != nil {
		// The DSN's sslrootcert is read by the loader itself: a missing one is a load error.
		add("ZTBANK_DB_PASSWORD_FILE", d.PasswordFile)
	}
	if e := l.Edge; e != nil {
		add("EDGE_TLS_CERT", e.TLSCert)
		add("EDGE_TLS_KEY", e.TLSKey)
		add("EDGE_OIDC_CA_FILE", e.OIDCCAFile)
		if e.Enrolment != "claims" {
			add("EDGE_ENROLMENT", e.Enrolment)
		}
		if dir, ok := strings.CutPrefix(e.KeyStore, "dir:"); ok {
			add("EDGE_KEY_STORE", dir)
		}
	}
	if o := l.Devoidc; o != nil {
		add("DEVOIDC_STATE_DIR", o.StateDir)
	}
	if a := l.DBAdmin; a != nil {
		add("ZTBANK_TOPOLOGY", a.TopologyPath)
	}
	return out
}

// listens reports whether the loaded container listens on port (API, health or public).
func (l Loaded) listens(port int) bool {
	var addrs []string
	if s := l.Server; s != nil {
		addrs = append(addrs, s.Listen, s.HealthListen)
	}
	if e := l.Edge; e != nil {
		addrs = append(addrs, e.PublicListen)
	}
	if o := l.Devoidc; o != nil {
		addrs = append(addrs, o.Listen)
	}
	for _, a := range addrs {
		if _, p, err := net.SplitHostPort(a); err == nil && p == strconv.Itoa(port) {
			return true
		}
	}
	return false
}

// apiPort is the port a service's API listens on.
func (l Loaded) apiPort() int {
	if l.Server == nil {
		return 0
	}
	return portOf(l.Server.Listen)
}

// healthPort is the port a service's health listener (and the edge's public JWKS) is on.
func (l Loaded) healthPort() int {
	if l.Server == nil {
		return 0
	}
	return portOf(l.Server.HealthListen)
}

// portOf is the port of a host:port listen address, 0 when it has none.
func portOf(addr string) int {
	_, p, _ := net.SplitHostPort(addr)
	n, _ := strconv.Atoi(p)
	return n
}

func urlHostPort(raw string) (string, int, error) {
	scheme, rest, ok := strings.Cut(raw, "://")
	if !ok {
		return "", 0, errorf("%q is not a URL", raw)
	}
	hostport, _, _ := strings.Cut(rest, "/")
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		host = hostport
		switch scheme {
		case "https":
			port = "443"
		case "http":
			port = "80"
		default:
			return "", 0, errorf("%q has no port", raw)
		}
	}
	n, err := strconv.Atoi(port)
	if err != nil {
		return "", 0, errorf("%q: port %q", raw, port)
	}
	return host, n, nil
}

// externalHost reports whether host names something outside any rendering (a bank's IdP on
// the internet), as opposed to loopback, a compose service or a cluster Service name.
func externalHost(host string) bool {
	if host == "localhost" || net.ParseIP(host) != nil {
		return false
	}
	if strings.HasSuffix(host, ".svc") || strings.HasSuffix(host, ".svc.cluster.local") {
		return false
	}
	return strings.Count(host, ".") >= 2
}
