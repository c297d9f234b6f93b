// Package topology loads and validates the platform topology: tenants, workloads, their
// SPIFFE IDs and the call edges between them. Every enforcement point (mTLS allowlists, OPA
// data, SPIRE entries, Kubernetes and Istio objects) derives from one Topology value so they
// cannot disagree.
package topology

import (
	"bytes"
	_ "embed"
	"errors"
	"fmt"
	"net"
	"os"
	"regexp"
	"slices"
	"sort"
	"strings"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"gopkg.in/yaml.v3"
)

// ErrInvalid is wrapped by every validation error so callers can tell a bad file from an
// unreadable one.
var ErrInvalid = errors.New("invalid topology")

//go:embed topology.yaml
var embedded []byte

// Embedded returns the raw topology file compiled into the binary. Services use it when no
// override path is configured, so a container needs no extra mount to know its peers.
func Embedded() []byte { return bytes.Clone(embedded) }

// Default parses the embedded topology. It panics only if the committed file is invalid,
// which the package tests rule out.
func Default() *Topology {
	t, err := Parse("topology.yaml", embedded)
	if err != nil {
		panic(err)
	}
	return t
}

// Load reads the topology from path, or the embedded default when path is empty.
func Load(path string) (*Topology, error) {
	if path == "" {
		return Parse("topology.yaml", embedded)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read topology: %w", err)
	}
	return Parse(path, b)
}

// Topology is the validated, immutable view of the topology file.
type Topology struct {
	TrustDomain       spiffeid.TrustDomain
	PlatformNamespace string
	Tenants           []Tenant
	Workloads         []Workload

	byName map[string]*Workload
	byID   map[spiffeid.ID]*Workload
}

// Tenant is one bank on the platform. Each has its own database.
type Tenant struct {
	Name     string
	Database string
}

// Workload is one running service instance with its own identity.
type Workload struct {
	// Name is "<tenant>/<service>" for tenant workloads and the service name for platform ones.
	Name      string
	Tenant    string // empty for platform workloads
	Namespace string // Kubernetes namespace; equals Tenant for tenant workloads
	Service   string // binary and ServiceAccount name
	ID        spiffeid.ID
	Listen    string // local mTLS listen address
	Public    string // local client-facing HTTPS address; only the edge has one
	Health    string // local plain health/metrics address
	DBRole    string // PostgreSQL login role, empty if the workload has no database
	// External workloads (Emissary-ingress) are callers we admit but do not build or run
	// locally; they have no local addresses.
	External bool
	Calls    []string

	line int
}

// Workload returns the workload with the given name.
func (t *Topology) Workload(name string) (Workload, bool) {
	w, ok := t.byName[name]
	if !ok {
		return Workload{}, false
	}
	return *w, true
}

// WorkloadByID returns the workload that owns the SPIFFE ID.
func (t *Topology) WorkloadByID(id spiffeid.ID) (Workload, bool) {
	w, ok := t.byID[id]
	if !ok {
		return Workload{}, false
	}
	return *w, true
}

// Tenant returns the named tenant.
func (t *Topology) Tenant(name string) (Tenant, bool) {
	for _, tn := range t.Tenants {
		if tn.Name == name {
			return tn, true
		}
	}
	return Tenant{}, false
}

// AllowedCallers returns the SPIFFE IDs that may open a connection to the named workload,
// sorted for stable output. It is the server-side mTLS allowlist.
func (t *Topology) AllowedCallers(name string) []spiffeid.ID {
	var ids []spiffeid.ID
	for _, w := range t.Workloads {
		if slices.Contains(w.Calls, name) {
			ids = append(ids, w.ID)
		}
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i].String() < ids[j].String() })
	return ids
}

// TenantWorkload returns the workload that runs service for tenant. Services name their
// peers and callers by service within their own tenant and resolve them here, so the same
// binary serves whichever tenant the topology gives it.
func (t *Topology) TenantWorkload(tenant, service string) (Workload, bool) {
	for _, w := range t.Workloads {
		if w.Tenant == tenant && tenant != "" && w.Service == service {
			return w, true
		}
	}
	return Workload{}, false
}

// MayCall reports whether the workload named from may call the workload named to.
func (t *Topology) MayCall(from, to string) bool {
	w, ok := t.byName[from]
	return ok && slices.Contains(w.Calls, to)
}

// Edges returns every allowed (caller, callee) pair, in file order.
func (t *Topology) Edges() [][2]string {
	var out [][2]string
	for _, w := range t.Workloads {
		for _, c := range w.Calls {
			out = append(out, [2]string{w.Name, c})
		}
	}
	return out
}

// The file format. Field names are snake_case as in the file; unknown keys are errors.
type fileTopology struct {
	TrustDomain       string         `yaml:"trust_domain"`
	PlatformNamespace string         `yaml:"platform_namespace"`
	Tenants           []fileTenant   `yaml:"tenants"`
	Workloads         []fileWorkload `yaml:"workloads"`
}

type fileTenant struct {
	Name     string `yaml:"name"`
	Database string `yaml:"database"`
	line     int
}

type fileWorkload struct {
	Name         string   `yaml:"name"`
	Tenant       string   `yaml:"tenant"`
	Service      string   `yaml:"service"`
	Platform     bool     `yaml:"platform"`
	External     bool     `yaml:"external"`
	Listen       string   `yaml:"listen"`
	Public       string   `yaml:"public"`
	Health       string   `yaml:"health"`
	DatabaseRole string   `yaml:"database_role"`
	Calls        []string `yaml:"calls"`
	line         int
	callLines    []int
}

// UnmarshalYAML records the line of each tenant so errors can point at it.
func (f *fileTenant) UnmarshalYAML(n *yaml.Node) error {
	type plain fileTenant
	if err := checkKeys(n, "name", "database"); err != nil {
		return err
	}
	if err := n.Decode((*plain)(f)); err != nil {
		return err
	}
	f.line = n.Line
	return nil
}

// UnmarshalYAML records the line of each workload and of each call edge.
func (f *fileWorkload) UnmarshalYAML(n *yaml.Node) error {
	type plain fileWorkload
	if err := checkKeys(n, "name", "tenant", "service", "platform", "external", "listen", "public", "health", "database_role", "calls"); err != nil {
		return err
	}
	if err := n.Decode((*plain)(f)); err != nil {
		return err
	}
	f.line = n.Line
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == "calls" {
			for _, c := range n.Content[i+1].Content {
				f.callLines = append(f.callLines, c.Line)
			}
		}
	}
	return nil
}

// checkKeys rejects unknown keys. yaml.v3 does not apply KnownFields inside custom
// unmarshalers, so a misspelt key would otherwise be ignored silently.
func checkKeys(n *yaml.Node, allowed ...string) error {
	if n.Kind != yaml.MappingNode {
		return fmt.Errorf("line %d: expected a mapping", n.Line)
	}
	for i := 0; i < len(n.Content); i += 2 {
		k := n.Content[i]
		if !slices.Contains(allowed, k.Value) {
			return fmt.Errorf("line %d: unknown field %q", k.Line, k.Value)
		}
	}
	return nil
}

var (
	dnsLabel = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)
	sqlIdent = regexp.MustCompile(`^[a-z_][a-z0-9_]*$`)
)

// Parse validates a topology file. Errors are one line and name the file and line.
func Parse(file string, b []byte) (*Topology, error) {
	var f fileTopology
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("%w: %s: %s", ErrInvalid, file, strings.TrimPrefix(oneLine(err), "yaml: "))
	}
	bad := func(line int, format string, args ...any) error {
		return fmt.Errorf("%w: %s:%d: %s", ErrInvalid, file, line, fmt.Sprintf(format, args...))
	}

	td, err := spiffeid.TrustDomainFromString(f.TrustDomain)
	if err != nil || f.TrustDomain == "" {
		return nil, bad(1, "trust_domain %q is not a valid SPIFFE trust domain", f.TrustDomain)
	}
	if !dnsLabel.MatchString(f.PlatformNamespace) {
		return nil, bad(1, "platform_namespace %q is not a DNS label", f.PlatformNamespace)
	}
	t := &Topology{
		TrustDomain:       td,
		PlatformNamespace: f.PlatformNamespace,
		byName:            map[string]*Workload{},
		byID:              map[spiffeid.ID]*Workload{},
	}
	if len(f.Tenants) == 0 {
		return nil, bad(1, "no tenants")
	}
	for _, ft := range f.Tenants {
		switch {
		case !dnsLabel.MatchString(ft.Name):
			return nil, bad(ft.line, "tenant name %q is not a DNS label", ft.Name)
		case ft.Name == f.PlatformNamespace:
			return nil, bad(ft.line, "tenant %q clashes with the platform namespace", ft.Name)
		case !sqlIdent.MatchString(ft.Database):
			return nil, bad(ft.line, "tenant %q: database %q is not a lower-case SQL identifier", ft.Name, ft.Database)
		}
		if _, dup := t.Tenant(ft.Name); dup {
			return nil, bad(ft.line, "duplicate tenant %q", ft.Name)
		}
		t.Tenants = append(t.Tenants, Tenant{Name: ft.Name, Database: ft.Database})
	}

	addrs := map[string]string{}
	roles := map[string]string{}
	for _, fw := range f.Workloads {
		w := Workload{Name: fw.Name, Tenant: fw.Tenant, Service: fw.Service, Listen: fw.Listen,
			Public: fw.Public, External: fw.External, Health: fw.Health, DBRole: fw.DatabaseRole, Calls: fw.Calls, line: fw.line}
		if !dnsLabel.MatchString(fw.Service) {
			return nil, bad(fw.line, "workload %q: service %q is not a DNS label", fw.Name, fw.Service)
		}
		if fw.Platform {
			if fw.Tenant != "" {
				return nil, bad(fw.line, "workload %q: a platform workload has no tenant", fw.Name)
			}
			w.Namespace = f.PlatformNamespace
			if fw.Name != fw.Service {
				return nil, bad(fw.line, "workload %q: a platform workload is named after its service %q", fw.Name, fw.Service)
			}
		} else {
			if _, ok := t.Tenant(fw.Tenant); !ok {
				return nil, bad(fw.line, "workload %q: unknown tenant %q", fw.Name, fw.Tenant)
			}
			w.Namespace = fw.Tenant
			if want := fw.Tenant + "/" + fw.Service; fw.Name != want {
				return nil, bad(fw.line, "workload %q: must be named %q", fw.Name, want)
			}
		}
		id, err := spiffeid.FromSegments(td, "ns", w.Namespace, "sa", w.Service)
		if err != nil {
			return nil, bad(fw.line, "workload %q: %v", fw.Name, err)
		}
		w.ID = id
		if other, dup := t.byID[id]; dup {
			return nil, bad(fw.line, "duplicate SPIFFE ID %s (also workload %q at line %d)", id, other.Name, other.line)
		}
		if _, dup := t.byName[w.Name]; dup {
			return nil, bad(fw.line, "duplicate workload %q", w.Name)
		}
		if w.Public != "" && !fw.Platform {
			return nil, bad(fw.line, "workload %q: only platform workloads have a public address", w.Name)
		}
		checks := []struct{ key, addr string }{{"listen", w.Listen}, {"health", w.Health}}
		if w.External {
			if w.Listen != "" || w.Health != "" || w.Public != "" || w.DBRole != "" {
				return nil, bad(fw.line, "workload %q: an external workload has no local addresses or database", w.Name)
			}
			if len(w.Calls) == 0 {
				return nil, bad(fw.line, "workload %q: an external workload with no calls has no reason to be here", w.Name)
			}
			checks = nil
		}
		if w.Public != "" {
			checks = append(checks, struct{ key, addr string }{"public", w.Public})
		}
		for _, a := range checks {
			if _, _, err := net.SplitHostPort(a.addr); err != nil {
				return nil, bad(fw.line, "workload %q: %s address %q is not host:port", w.Name, a.key, a.addr)
			}
			if prev, dup := addrs[a.addr]; dup {
				return nil, bad(fw.line, "workload %q: %s address %s already used by %s", w.Name, a.key, a.addr, prev)
			}
			addrs[a.addr] = w.Name
		}
		if w.DBRole != "" {
			if !sqlIdent.MatchString(w.DBRole) {
				return nil, bad(fw.line, "workload %q: database_role %q is not a lower-case SQL identifier", w.Name, w.DBRole)
			}
			key := w.Tenant + "/" + w.DBRole
			if prev, dup := roles[key]; dup {
				return nil, bad(fw.line, "workload %q: database_role %q already used by %s", w.Name, w.DBRole, prev)
			}
			roles[key] = w.Name
		}
		t.Workloads = append(t.Workloads, w)
		p := &t.Workloads[len(t.Workloads)-1]
		t.byName[w.Name] = p
		t.byID[id] = p
	}
	// Pointers into the slice stay valid only once appends are done; rebuild the indexes.
	for i := range t.Workloads {
		t.byName[t.Workloads[i].Name] = &t.Workloads[i]
		t.byID[t.Workloads[i].ID] = &t.Workloads[i]
	}
	if len(t.Workloads) == 0 {
		return nil, bad(1, "no workloads")
	}

	for _, fw := range f.Workloads {
		seen := map[string]bool{}
		for i, c := range fw.Calls {
			line := fw.line
			if i < len(fw.callLines) {
				line = fw.callLines[i]
			}
			callee, ok := t.byName[c]
			switch {
			case !ok:
				return nil, bad(line, "workload %q calls missing workload %q", fw.Name, c)
			case c == fw.Name:
				return nil, bad(line, "workload %q calls itself", fw.Name)
			case seen[c]:
				return nil, bad(line, "workload %q lists call to %q twice", fw.Name, c)
			case fw.Tenant != "" && callee.Tenant != fw.Tenant:
				return nil, bad(line, "workload %q (tenant %s) may not call %q in tenant %s", fw.Name, fw.Tenant, c, callee.Tenant)
			}
			seen[c] = true
		}
	}
	if err := checkCatalogue(t, f, bad); err != nil {
		return nil, err
	}
	return t, nil
}

func oneLine(err error) string {
	return strings.Join(strings.Fields(err.Error()), " ")
}
