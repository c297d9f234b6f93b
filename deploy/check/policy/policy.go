// Package policy runs the deployment policies (Rego, embedded, evaluated with OPA's Go API)
// over rendered manifests. The policies encode the hardening baseline and the zero-trust
// invariants: non-root, read-only root filesystems, limits, pinned images, no host access
// outside SPIRE, STRICT mTLS, default deny, and SPIFFE IDs that match the topology.
package policy

import (
	"context"
	"embed"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strings"

	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/ztbank/ztbank/deploy/check/manifest"
	"github.com/ztbank/ztbank/libs/topology"
)

//go:embed rego/*.rego
var files embed.FS

// Checker is a prepared policy query; prepare once, evaluate per manifest set.
type Checker struct {
	query rego.PreparedEvalQuery
	topo  map[string]any
}

// IngressServiceAccount must match the generator's: the ingress is the one non-topology
// caller of the tenant gateways.
const IngressServiceAccount = "emissary-ingress"

// New compiles the embedded policies against the topology.
func New(ctx context.Context, t *topology.Topology) (*Checker, error) {
	opts := []func(*rego.Rego){rego.Query("data.ztbank.deploy.deny")}
	err := fs.WalkDir(files, "rego", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || path.Ext(p) != ".rego" {
			return err
		}
		b, err := files.ReadFile(p)
		if err != nil {
			return err
		}
		opts = append(opts, rego.Module(p, string(b)))
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read policies: %w", err)
	}
	q, err := rego.New(opts...).PrepareForEval(ctx)
	if err != nil {
		return nil, fmt.Errorf("prepare policies: %w", err)
	}
	return &Checker{query: q, topo: topologyInput(t)}, nil
}

// topologyInput is the topology as the policies see it. allowed_principals is derived here
// from AllowedCallers independently of the generator, so a generator bug shows as a denial.
func topologyInput(t *topology.Topology) map[string]any {
	var tenants []any
	for _, tn := range t.Tenants {
		tenants = append(tenants, tn.Name)
	}
	var workloads []any
	issuer := ""
	for _, w := range t.Workloads {
		if w.External {
			// Emissary-ingress: admitted as a caller (it is in the gateways' principals) but
			// deployed by its own chart, not by these manifests.
			continue
		}
		if w.Public != "" {
			issuer = w.ID.String()
		}
		var principals []any
		for _, id := range t.AllowedCallers(w.Name) {
			principals = append(principals, strings.TrimPrefix(id.String(), "spiffe://"))
		}
		workloads = append(workloads, map[string]any{
			"name":               w.Name,
			"namespace":          w.Namespace,
			"service":            w.Service,
			"id":                 w.ID.String(),
			"allowed_principals": principals,
		})
	}
	return map[string]any{
		"trust_domain":       t.TrustDomain.Name(),
		"platform_namespace": t.PlatformNamespace,
		"tenants":            tenants,
		"workloads":          workloads,
		"issuer":             issuer,
	}
}

// Check returns every policy violation in objs, sorted; none means the manifests pass.
func (c *Checker) Check(ctx context.Context, objs []manifest.Object) ([]string, error) {
	in := make([]any, 0, len(objs))
	for _, o := range objs {
		m, err := o.Map()
		if err != nil {
			return nil, err
		}
		in = append(in, m)
	}
	rs, err := c.query.Eval(ctx, rego.EvalInput(map[string]any{"objects": in, "topology": c.topo}))
	if err != nil {
		return nil, fmt.Errorf("evaluate policies: %w", err)
	}
	if len(rs) != 1 || len(rs[0].Expressions) != 1 {
		return nil, fmt.Errorf("evaluate policies: unexpected result %v", rs)
	}
	set, ok := rs[0].Expressions[0].Value.([]any)
	if !ok {
		return nil, fmt.Errorf("evaluate policies: deny is %T, want a set", rs[0].Expressions[0].Value)
	}
	out := make([]string, 0, len(set))
	for _, v := range set {
		out = append(out, fmt.Sprint(v))
	}
	sort.Strings(out)
	return out, nil
}
