package tiltfile

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
)

var workloadKinds = []string{"Deployment", "StatefulSet", "DaemonSet", "Job"}

// tiltNames mirrors how Tilt names the resources it assembles from workloads: the object's
// name when no other workload shares it, else name:kind:namespace.
func (r *Run) tiltNames() map[string]bool {
	count := map[string]int{}
	for _, o := range r.Objects {
		if slices.Contains(workloadKinds, o.Kind) {
			count[o.Name]++
		}
	}
	names := map[string]bool{}
	for _, o := range r.Objects {
		if !slices.Contains(workloadKinds, o.Kind) {
			continue
		}
		if count[o.Name] == 1 {
			names[o.Name] = true
		} else {
			names[fmt.Sprintf("%s:%s:%s", o.Name, strings.ToLower(o.Kind), o.Namespace)] = true
		}
	}
	return names
}

// objectExists resolves a Tilt object selector "name:kind[:namespace]".
func (r *Run) objectExists(sel string) bool {
	parts := strings.Split(sel, ":")
	for _, o := range r.Objects {
		if o.Name != parts[0] {
			continue
		}
		if len(parts) > 1 && !strings.EqualFold(o.Kind, parts[1]) {
			continue
		}
		if len(parts) > 2 && o.Namespace != parts[2] {
			continue
		}
		return true
	}
	return false
}

// goPackageRef finds the package a `go build` or `go run` in a local_resource names.
var goPackageRef = regexp.MustCompile(`go (?:build|run)\b[^&|;]*?\s(\./[A-Za-z0-9_./%-]+)`)

// Binaries are the design's fixed set of binaries (DESIGN.md §1 and the tools). Their
// directories may not exist yet while their owners write them; any other package path must.
var Binaries = []string{
	"./services/edge", "./services/gateway", "./services/user", "./services/account",
	"./services/payment", "./services/ledger", "./tools/devoidc", "./tools/dbadmin",
}
var binOutput = regexp.MustCompile(`-o (\S+)`)

// Check returns every problem with the run: missing files and paths, images the overlay runs
// but nobody builds, dangling resource references, and SPIRE not ordered before workloads.
func (r *Run) Check() []error {
	var errs []error
	exists := func(what, p string) {
		if _, err := os.Stat(filepath.Join(r.Root, p)); err != nil {
			errs = append(errs, fmt.Errorf("%s %s does not exist", what, p))
		}
	}
	if len(r.Kustomizations) == 0 || len(r.Objects) == 0 {
		errs = append(errs, fmt.Errorf("Tiltfile applies no kustomization"))
	}
	for _, k := range r.Kustomizations {
		exists("kustomization", filepath.Join(k, "kustomization.yaml"))
	}
	for _, c := range r.Contexts {
		if !strings.HasPrefix(c, "kind-") {
			errs = append(errs, fmt.Errorf("allow_k8s_contexts(%q): the Tiltfile is for kind only", c))
		}
	}

	built := map[string]bool{}
	outputs := map[string]bool{}
	for _, lr := range r.LocalResources {
		for _, m := range binOutput.FindAllStringSubmatch(lr.Cmd, -1) {
			outputs[m[1]] = true
		}
	}
	for _, img := range r.Images {
		built[img.Ref] = true
		if img.Command != "" {
			for _, d := range img.Deps {
				exists("custom_build "+img.Ref+" dep", d)
			}
			if !strings.Contains(img.Command, "$EXPECTED_REF") {
				errs = append(errs, fmt.Errorf("custom_build %s: the command never tags $EXPECTED_REF, so Tilt cannot find the image", img.Ref))
			}
			continue
		}
		exists("docker_build context", img.Context)
		exists("Dockerfile", img.Dockerfile)
		if img.Target != "" {
			b, err := os.ReadFile(filepath.Join(r.Root, img.Dockerfile))
			if err == nil && !regexp.MustCompile(`(?im)^FROM\s+\S+\s+AS\s+`+regexp.QuoteMeta(img.Target)+`\s*$`).Match(b) {
				errs = append(errs, fmt.Errorf("%s has no stage %q", img.Dockerfile, img.Target))
			}
		}
		for _, s := range img.Syncs {
			if !outputs[s[0]] {
				errs = append(errs, fmt.Errorf("image %s syncs %s, which no local_resource builds", img.Ref, s[0]))
			}
		}
	}
	for _, o := range r.Objects {
		m, err := o.Map()
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, img := range containerImages(m) {
			repo, _, _ := strings.Cut(img, ":")
			if strings.HasPrefix(repo, "ztbank/") && !built[repo] {
				errs = append(errs, fmt.Errorf("%s %s/%s runs %s, which the Tiltfile does not build", o.Kind, o.Namespace, o.Name, img))
			}
		}
	}

	resources := map[string]bool{"uncategorized": true}
	deps := map[string][]string{}
	for _, lr := range r.LocalResources {
		resources[lr.Name] = true
		deps[lr.Name] = lr.ResourceDeps
		for _, d := range lr.Deps {
			exists("local_resource "+lr.Name+" dep", d)
		}
		for _, m := range goPackageRef.FindAllStringSubmatch(lr.Cmd, -1) {
			if _, err := os.Stat(filepath.Join(r.Root, m[1])); err != nil && !slices.Contains(Binaries, m[1]) {
				errs = append(errs, fmt.Errorf("local_resource %s package %s does not exist", lr.Name, m[1]))
			}
		}
	}
	names := r.tiltNames()
	for name := range names {
		resources[name] = true
	}
	for _, kr := range r.K8sResources {
		if kr.Workload != "" && !names[kr.Workload] {
			errs = append(errs, fmt.Errorf("k8s_resource(%q): no such workload resource (Tilt would name it one of %v)", kr.Workload, keys(names)))
		}
		for _, sel := range kr.Objects {
			if !r.objectExists(sel) {
				errs = append(errs, fmt.Errorf("k8s_resource(%q): object %s is not in the applied YAML", kr.Name(), sel))
			}
		}
		if kr.NewName != "" && kr.Workload != "" {
			delete(resources, kr.Workload)
		}
		resources[kr.Name()] = true
		deps[kr.Name()] = kr.ResourceDeps
	}
	for name, ds := range deps {
		for _, d := range ds {
			if !resources[d] {
				errs = append(errs, fmt.Errorf("resource %s depends on %s, which is not a resource", name, d))
			}
		}
	}

	// Ordering: every ClusterSPIFFEID is grouped into a resource that waits for SPIRE, and
	// every ztbank workload waits for that resource.
	idResources := map[string]bool{}
	for _, o := range r.Objects {
		if o.Kind != "ClusterSPIFFEID" {
			continue
		}
		owner := ""
		for _, kr := range r.K8sResources {
			if slices.Contains(kr.Objects, o.Name+":clusterspiffeid") || slices.Contains(kr.Objects, o.Name+":ClusterSPIFFEID") {
				owner = kr.Name()
			}
		}
		if owner == "" {
			errs = append(errs, fmt.Errorf("ClusterSPIFFEID %s is applied before SPIRE is ready (not in any resource)", o.Name))
			continue
		}
		idResources[owner] = true
		if !dependsOn(deps, owner, "spire-ready") {
			errs = append(errs, fmt.Errorf("resource %s (ClusterSPIFFEIDs) does not wait for spire-ready", owner))
		}
	}
	for _, kr := range r.K8sResources {
		if !r.isZtbankWorkload(kr.Workload) {
			continue
		}
		ok := false
		for id := range idResources {
			if dependsOn(deps, kr.Name(), id) {
				ok = true
			}
		}
		if !ok {
			errs = append(errs, fmt.Errorf("workload %s does not wait for its SPIFFE IDs", kr.Name()))
		}
	}
	for _, kr := range r.K8sResources {
		if kr.Name() == "edge" && kr.PortForwards == 0 {
			errs = append(errs, fmt.Errorf("the edge is not port-forwarded"))
		}
	}
	return errs
}

func (r *Run) isZtbankWorkload(tiltName string) bool {
	name, _, _ := strings.Cut(tiltName, ":")
	for _, o := range r.Objects {
		if o.Kind == "Deployment" && o.Name == name && strings.Contains(string(o.JSON), `"ztbank.io/workload"`) {
			return true
		}
	}
	return false
}

// dependsOn reports whether from transitively depends on to.
func dependsOn(deps map[string][]string, from, to string) bool {
	seen := map[string]bool{}
	var walk func(string) bool
	walk = func(n string) bool {
		if seen[n] {
			return false
		}
		seen[n] = true
		for _, d := range deps[n] {
			if d == to || walk(d) {
				return true
			}
		}
		return false
	}
	return walk(from)
}

func containerImages(m map[string]any) []string {
	spec, _ := m["spec"].(map[string]any)
	tmpl, _ := spec["template"].(map[string]any)
	pod, _ := tmpl["spec"].(map[string]any)
	var out []string
	for _, key := range []string{"containers", "initContainers"} {
		cs, _ := pod[key].([]any)
		for _, c := range cs {
			if cm, ok := c.(map[string]any); ok {
				if img, ok := cm["image"].(string); ok {
					out = append(out, img)
				}
			}
		}
	}
	return out
}

func keys(m map[string]bool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
