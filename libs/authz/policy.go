package authz

import (
	"bytes"
	"context"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"sort"
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/storage/inmem"

	"github.com/ztbank/ztbank/libs/topology"
)

// The policy directory holds the Rego modules, their unit tests and the permission table.
// Tests are embedded too so TestRegoPolicy runs exactly what ships.
//
//go:embed policy/*.rego policy/data.json
var embeddedRoot embed.FS

// embedded is the policy directory as the root of an fs.FS, the same shape WithPolicy takes.
var embedded = mustSub(embeddedRoot, "policy")

func mustSub(fsys fs.FS, dir string) fs.FS {
	sub, err := fs.Sub(fsys, dir)
	if err != nil {
		panic(err) // only if the embed directive and this name disagree
	}
	return sub
}

// Query is the single rule the engine evaluates. It must yield {"allow": bool, "reason": string}.
const Query = "data.ztbank.authz.decision"

// DataFile is the name of the permission table inside a policy directory.
const DataFile = "data.json"

// policySource is a loaded, parsed policy directory.
type policySource struct {
	origin      string // "embedded" or "override", for error messages
	modules     map[string]*ast.Module
	tests       map[string]*ast.Module
	sources     map[string][]byte // the modules' source text, for Bundle
	data        map[string]any    // DataFile, decoded
	permissions map[string]bool
	revision    string
}

// loadPolicy parses every *.rego file and DataFile at the root of fsys. Parse errors name
// the file and line.
func loadPolicy(fsys fs.FS, origin string) (*policySource, error) {
	entries, err := fs.ReadDir(fsys, ".")
	if err != nil {
		return nil, fmt.Errorf("%w: read %s policy directory: %w", ErrPolicy, origin, err)
	}
	src := &policySource{origin: origin, modules: map[string]*ast.Module{}, tests: map[string]*ast.Module{}, sources: map[string][]byte{}}
	digest := sha256.New()
	var names []string
	for _, e := range entries {
		if !e.IsDir() {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names) // ReadDir sorts already; the revision must not depend on that
	var rawData []byte
	for _, name := range names {
		isRego := strings.HasSuffix(name, ".rego")
		if !isRego && name != DataFile {
			continue
		}
		b, err := fs.ReadFile(fsys, name)
		if err != nil {
			return nil, fmt.Errorf("%w: read %s policy: %w", ErrPolicy, origin, err)
		}
		if name == DataFile {
			rawData = b
		} else {
			m, err := ast.ParseModuleWithOpts(name, string(b), ast.ParserOptions{RegoVersion: ast.RegoV1, ProcessAnnotation: true})
			if err != nil {
				return nil, fmt.Errorf("%w: %s policy does not parse: %w", ErrPolicy, origin, err)
			}
			if strings.HasSuffix(name, "_test.rego") {
				src.tests[name] = m
				continue // tests do not change decisions, so they do not change the revision
			}
			src.modules[name] = m
			src.sources[name] = b
		}
		fmt.Fprintf(digest, "%s\x00%d\x00", name, len(b))
		digest.Write(b)
	}
	if len(src.modules) == 0 {
		return nil, fmt.Errorf("%w: %s policy directory has no .rego modules", ErrPolicy, origin)
	}
	if rawData == nil {
		return nil, fmt.Errorf("%w: %s policy directory has no %s", ErrPolicy, origin, DataFile)
	}
	dec := json.NewDecoder(bytes.NewReader(rawData))
	dec.UseNumber()
	if err := dec.Decode(&src.data); err != nil {
		return nil, fmt.Errorf("%w: %s %s: %w", ErrPolicy, origin, DataFile, err)
	}
	perms, err := permissionNames(src.data)
	if err != nil {
		return nil, fmt.Errorf("%w: %s %s: %w", ErrPolicy, origin, DataFile, err)
	}
	src.permissions = perms
	src.revision = origin + ":" + hex.EncodeToString(digest.Sum(nil))[:12]
	return src, nil
}

// permissionNames reads the keys of ztbank.rbac.permissions, which Require checks route
// declarations against so a misspelt permission fails when routes are built.
func permissionNames(data map[string]any) (map[string]bool, error) {
	zt, _ := data["ztbank"].(map[string]any)
	rbac, _ := zt["rbac"].(map[string]any)
	perms, ok := rbac["permissions"].(map[string]any)
	if !ok || len(perms) == 0 {
		return nil, errors.New("no ztbank.rbac.permissions object")
	}
	out := make(map[string]bool, len(perms))
	for p := range perms {
		out[p] = true
	}
	return out, nil
}

// rbac returns the ztbank.rbac object of the data file; loadPolicy has checked it exists.
func (src *policySource) rbac() map[string]any {
	zt, _ := src.data["ztbank"].(map[string]any)
	rbac, _ := zt["rbac"].(map[string]any)
	return rbac
}

// document builds the data the policy reads: the permission table as shipped, the topology
// and the service itself. It is built once; evaluation reads it without copying.
func (src *policySource) document(svc Service, topo *topology.Topology) (map[string]any, error) {
	zt, ok := src.data["ztbank"].(map[string]any)
	if !ok {
		return nil, fmt.Errorf("%w: %s %s has no top-level \"ztbank\" object", ErrPolicy, src.origin, DataFile)
	}
	for _, reserved := range []string{"topology", "service"} {
		if _, clash := zt[reserved]; clash {
			return nil, fmt.Errorf("%w: %s %s must not define ztbank.%s; it comes from the topology", ErrPolicy, src.origin, DataFile, reserved)
		}
	}
	merged := make(map[string]any, len(zt)+2)
	for k, v := range zt {
		merged[k] = v
	}
	merged["topology"] = TopologyData(topo)
	merged["service"] = map[string]any{
		"name":   svc.Workload,
		"tenant": svc.Tenant,
		"id":     svc.ID.String(),
		// Built here once rather than concatenated by the policy on every decision.
		"user_prefix": "spiffe://" + svc.Tenant + "/user/",
	}
	return map[string]any{"ztbank": merged}, nil
}

// TopologyData is the topology as the policy sees it (data.ztbank.topology): workloads by
// name with their SPIFFE ID, tenant and callees, and an index from SPIFFE ID to name.
// Exported so tools can generate OPA data files from the same function.
func TopologyData(topo *topology.Topology) map[string]any {
	workloads := make(map[string]any, len(topo.Workloads))
	byID := make(map[string]any, len(topo.Workloads))
	// callers indexes the edges by callee, so the policy's allowlist check is one lookup
	// instead of a scan of the caller's call list (the costliest check per decision).
	callers := make(map[string]any, len(topo.Workloads))
	for _, w := range topo.Workloads {
		calls := make([]any, len(w.Calls))
		for i, c := range w.Calls {
			calls[i] = c
			set, _ := callers[c].(map[string]any)
			if set == nil {
				set = map[string]any{}
				callers[c] = set
			}
			set[w.Name] = true
		}
		workloads[w.Name] = map[string]any{"id": w.ID.String(), "tenant": w.Tenant, "calls": calls}
		byID[w.ID.String()] = w.Name
	}
	return map[string]any{"workloads": workloads, "by_id": byID, "callers": callers}
}

// prepare compiles the modules against the data and prepares Query. This is the only place
// the policy is compiled.
func prepare(ctx context.Context, src *policySource, data map[string]any) (rego.PreparedEvalQuery, error) {
	opts := []func(*rego.Rego){
		rego.Query(Query),
		// The store hands out AST values, so the topology and permission table are not
		// converted from Go values again on every read during evaluation.
		rego.Store(inmem.NewFromObjectWithOpts(data, inmem.OptReturnASTValuesOnRead(true))),
		rego.StoreReadAST(true),
		rego.SetRegoVersion(ast.RegoV1),
		rego.Strict(true),
	}
	names := make([]string, 0, len(src.modules))
	for name := range src.modules {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		opts = append(opts, rego.ParsedModule(src.modules[name]))
	}
	pq, err := rego.New(opts...).PrepareForEval(ctx)
	if err != nil {
		return rego.PreparedEvalQuery{}, fmt.Errorf("%w: %s policy does not compile: %w", ErrPolicy, src.origin, err)
	}
	return pq, nil
}
