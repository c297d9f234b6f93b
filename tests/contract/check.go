package contract

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"
)

func errorf(format string, args ...any) error { return fmt.Errorf(format, args...) }

// Rendering is one deployment's containers, in a form both the Kubernetes and the compose
// readers produce.
type Rendering struct {
	Name       string
	Containers []*Container
	// Problems are reference problems found while reading the rendering (a Secret, volume or
	// ServiceAccount that does not exist).
	Problems []string
	// Resolve finds what answers at host:port for a container of this rendering.
	Resolve func(from *Container, host string, port int) ([]Target, error)
	// Policy, when set, reports why the network or mesh policies refuse a dial from one
	// container to another (to is nil for an address outside the rendering), or "".
	Policy func(from, to *Container, port int, d Dial) string
	// Prerequisites are host:port addresses of things the deployment expects the cluster to
	// run already (documented prerequisites such as an OpenTelemetry collector on EKS).
	Prerequisites []string
	// ObjectDials are addresses that objects other than our containers name (Emissary's
	// Mappings and AuthService, Istio's RequestAuthentication JWKS URI), each from where it is
	// dialled.
	ObjectDials []ObjectDial
	// Checked records every dial Check examined ("<container>: <what>"), so a test can tell
	// a clean result from one that checked nothing.
	Checked []string
}

// Container is one container as its process would see the world.
type Container struct {
	ID        string // "Deployment bank-a/user container user"
	Namespace string // Kubernetes namespace, or the compose project
	Image     string
	Binary    string            // one of Binaries, or "" for images that are not ours
	Env       map[string]string // the whole environment, valueFrom and envFrom resolved
	Set       []string          // variables the manifest sets for it
	// Mounts maps each mount path to a host directory (or file) holding what the rendering
	// mounts there, so path-valued variables can be opened by the loader.
	Mounts map[string]string
	Ports  map[string]int // declared container ports by name ("" names unnamed ones by number)
	// Pod is where a Kubernetes container runs (nil for compose).
	Pod *Pod
	// Probes are the ports the kubelet's HTTP probes ask.
	Probes []int

	loaded *Loaded
}

// ObjectDial is an address a rendered object names.
type ObjectDial struct {
	From *Container // where the dial starts (its ID names the object)
	Dial
}

// Target is a container reached at a port.
type Target struct {
	C    *Container
	Port int
}

// Check runs the loader of every container of ours and the address, path and unread-variable
// checks, and returns every problem found, sorted.
func Check(r *Rendering) []string {
	problems := slices.Clone(r.Problems)
	for _, c := range r.Containers {
		if c.Binary == "" {
			continue
		}
		b := binaryNamed(c.Binary)
		l, err := b.Load(c.getenv())
		if err != nil {
			problems = append(problems, fmt.Sprintf("%s: %s loader rejects its environment: %v", c.ID, c.Binary, err))
			continue
		}
		c.loaded = &l
		for _, name := range c.Set {
			if !slices.Contains(l.Read, name) {
				problems = append(problems, fmt.Sprintf("%s: sets %s, which the %s binary does not read", c.ID, name, c.Binary))
			}
		}
		for _, port := range c.Probes {
			if !l.listens(port) {
				problems = append(problems, fmt.Sprintf("%s: a probe asks port %d, where the %s binary does not listen", c.ID, port, c.Binary))
			}
		}
		for name, p := range l.paths() {
			if !c.underMount(p) {
				problems = append(problems, fmt.Sprintf("%s: %s=%s is not under any volume mount", c.ID, name, c.unmap(p)))
			}
		}
	}
	for _, c := range r.Containers {
		if c.loaded == nil {
			continue
		}
		dials, bad := c.loaded.dials()
		for _, p := range bad {
			problems = append(problems, c.ID+": "+p)
		}
		for _, d := range dials {
			r.Checked = append(r.Checked, c.ID+": "+d.What)
			targets, p := checkDial(r, c, d)
			if p == "" && r.Policy != nil {
				if len(targets) == 0 {
					p = r.Policy(c, nil, d.Port, d)
				}
				for _, t := range targets {
					if p = r.Policy(c, t.C, t.Port, d); p != "" {
						p = fmt.Sprintf("refused on the way to %s: %s", t.C.ID, p)
						break
					}
				}
			}
			if p != "" {
				problems = append(problems, fmt.Sprintf("%s: %s at %s:%d: %s", c.ID, d.What, d.Host, d.Port, p))
			}
		}
	}
	for _, od := range r.ObjectDials {
		r.Checked = append(r.Checked, od.From.ID+": "+od.What)
		if _, p := checkDial(r, od.From, od.Dial); p != "" {
			problems = append(problems, fmt.Sprintf("%s: %s at %s:%d: %s", od.From.ID, od.What, od.Host, od.Port, p))
		}
	}
	sort.Strings(problems)
	return slices.Compact(problems)
}

func checkDial(r *Rendering, c *Container, d Dial) ([]Target, string) {
	if strings.HasSuffix(d.Host, ".invalid") {
		return nil, "" // a value an ExternalSecret fills from outside the cluster
	}
	if slices.Contains(r.Prerequisites, fmt.Sprintf("%s:%d", d.Host, d.Port)) {
		// Something the cluster runs already: what it is is not rendered, where it is (its
		// namespace) is, so network policy toward it can still be checked.
		var pod *Pod
		if _, ns, ok := clusterHost(d.Host, c.Namespace); ok {
			pod = &Pod{Namespace: ns}
		}
		return []Target{{C: &Container{ID: "prerequisite " + d.Host, Pod: pod}, Port: d.Port}}, ""
	}
	targets, err := r.Resolve(c, d.Host, d.Port)
	if err != nil {
		if d.External {
			return nil, "" // an identity provider outside the deployment
		}
		return nil, err.Error()
	}
	if len(targets) == 0 {
		return nil, "reaches no container"
	}
	for _, t := range targets {
		switch {
		case t.C.Binary != "" && t.C.loaded == nil:
			return nil, fmt.Sprintf("reaches %s, whose own environment does not load", t.C.ID)
		case d.Workload != "":
			if t.C.loaded == nil || t.C.loaded.Server == nil || t.C.loaded.Server.Self.Name != d.Workload {
				return nil, fmt.Sprintf("reaches %s, not workload %s", t.C.ID, d.Workload)
			}
			if d.Health && t.Port != t.C.loaded.healthPort() {
				return nil, fmt.Sprintf("reaches port %d of %s, which is not its health listener (ZTBANK_HEALTH_LISTEN is %s)", t.Port, t.C.ID, t.C.loaded.Server.HealthListen)
			}
			if !d.Health && t.Port != t.C.loaded.apiPort() {
				return nil, fmt.Sprintf("reaches port %d of %s, which does not serve its API (ZTBANK_LISTEN is %s)", t.Port, t.C.ID, t.C.loaded.Server.Listen)
			}
		case d.Binary != "":
			if t.C.Binary != d.Binary || t.C.loaded == nil || !t.C.loaded.listens(t.Port) {
				return nil, fmt.Sprintf("reaches port %d of %s, where no %s listens", t.Port, t.C.ID, d.Binary)
			}
		default:
			if t.C.loaded != nil && !t.C.loaded.listens(t.Port) {
				return nil, fmt.Sprintf("reaches port %d of %s, where it does not listen", t.Port, t.C.ID)
			}
		}
	}
	return targets, ""
}

// getenv is the container's environment with every path under a mount rewritten to where the
// test materialised that mount, so a loader that opens files (a CA bundle in the DSN) opens
// the rendering's content.
func (c *Container) getenv() func(string) string {
	mounts := make([]string, 0, len(c.Mounts))
	for m := range c.Mounts {
		mounts = append(mounts, m)
	}
	// Longest first, so /etc/ztbank/db-ca wins over /etc/ztbank.
	sort.Slice(mounts, func(i, j int) bool { return len(mounts[i]) > len(mounts[j]) })
	// One pass with one alternation (leftmost-first, longest mount first), so a rewritten
	// path is never rewritten again by a shorter mount such as /tmp.
	var re *regexp.Regexp
	if len(mounts) > 0 {
		alts := make([]string, len(mounts))
		for i, m := range mounts {
			alts[i] = regexp.QuoteMeta(m)
		}
		// dir: is the edge's EDGE_KEY_STORE=dir:<path>.
		re = regexp.MustCompile(`(^|[=\s,]|unix://|dir:)(` + strings.Join(alts, "|") + `)(/|$|\s)`)
	}
	return func(k string) string {
		v, ok := c.Env[k]
		if !ok || re == nil {
			return v
		}
		return re.ReplaceAllStringFunc(v, func(match string) string {
			sub := re.FindStringSubmatch(match)
			return sub[1] + c.Mounts[sub[2]] + sub[3]
		})
	}
}

func (c *Container) underMount(p string) bool {
	for _, host := range c.Mounts {
		if p == host || strings.HasPrefix(p, host+string(filepath.Separator)) {
			return true
		}
	}
	return false
}

// unmap turns a materialised host path back into the container path, for messages.
func (c *Container) unmap(p string) string {
	for m, host := range c.Mounts {
		if p == host || strings.HasPrefix(p, host+"/") {
			return m + strings.TrimPrefix(p, host)
		}
	}
	return p
}

// placeholder is the content written for a file whose real content is made outside the
// rendering (by Tilt, External Secrets or compose's init container): a real PEM certificate
// or key where one is expected, so parsers that open it at load time accept it.
func placeholder(name string) []byte {
	pemOnce.Do(makePEM)
	base := strings.ToLower(filepath.Base(name))
	switch {
	case strings.HasSuffix(base, ".key") || strings.Contains(base, "key"):
		return pemKey
	case strings.HasSuffix(base, ".pem") || strings.HasSuffix(base, ".crt") || strings.Contains(base, "ca"):
		return pemCert
	}
	return []byte("placeholder\n")
}

var (
	pemOnce          sync.Once
	pemCert, pemKey  []byte
	materialiseMutex sync.Mutex
)

func makePEM() {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "contract placeholder CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		panic(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		panic(err)
	}
	pemCert = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	pemKey = pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder})
}

// writeFiles materialises files (name → content) under dir.
func writeFiles(dir string, files map[string][]byte) error {
	materialiseMutex.Lock()
	defer materialiseMutex.Unlock()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for name, data := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(p, data, 0o600); err != nil {
			return err
		}
	}
	return nil
}
