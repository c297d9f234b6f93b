package tenancy

import (
	"bytes"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// module is the monorepo's module path prefix.
const module = "github.com/ztbank/ztbank"

// localOnly are the trees no service binary may link: local tooling, test suites and the
// developer commands. A service that imported one would ship demo users, a dev CA or a
// fake into production.
var localOnly = []string{module + "/devkit", module + "/tests", module + "/tools"}

// goList runs go list from the repository root, where go uses the workspace (go.work) as
// the build does; the test checks go env GOWORK first.
func goList(t *testing.T, root string, args ...string) string {
	t.Helper()
	cmd := exec.Command("go", append([]string{"list"}, args...)...)
	cmd.Dir = root
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list %v: %v\n%s", args, err, stderr.String())
	}
	return string(out)
}

// localDeps returns, for each given package, the local-only packages it links.
func localDeps(t *testing.T, root string, pkgs ...string) map[string][]string {
	t.Helper()
	// .Deps is the transitive closure go list -deps prints, per package.
	out := goList(t, root, append([]string{"-f", "{{.ImportPath}}|{{join .Deps \" \"}}"}, pkgs...)...)
	found := map[string][]string{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		pkg, deps, _ := strings.Cut(line, "|")
		found[pkg] = nil
		for _, d := range strings.Fields(deps) {
			if slices.ContainsFunc(localOnly, func(p string) bool { return d == p || strings.HasPrefix(d, p+"/") }) {
				found[pkg] = append(found[pkg], d)
			}
		}
	}
	return found
}

// TestServiceBinariesLinkNoLocalTooling: every main package under services/ (each is a
// service binary) reaches no package of devkit/, tests/ or tools/, directly or through any
// library. The same check on a developer command that does link devkit proves it can fail.
func TestServiceBinariesLinkNoLocalTooling(t *testing.T) {
	root := repoRoot(t)
	if got := strings.TrimSpace(goEnvGOWORK(t, root)); got != filepath.Join(root, "go.work") {
		t.Fatalf("go env GOWORK = %q, want the repository's %s", got, filepath.Join(root, "go.work"))
	}
	var mains []string
	for _, line := range strings.Split(strings.TrimSpace(goList(t, root, "-f", "{{.Name}} {{.ImportPath}}", "./services/...")), "\n") {
		if name, pkg, _ := strings.Cut(line, " "); name == "main" {
			mains = append(mains, pkg)
		}
	}
	// Six services today; fewer means the pattern no longer reaches the tree.
	if len(mains) < 6 {
		t.Fatalf("found %d service binaries under services/ (%v), want at least 6", len(mains), mains)
	}
	const canary = module + "/tools/devoidc"
	deps := localDeps(t, root, append(mains, canary)...)
	for _, m := range mains {
		if d, ok := deps[m]; !ok {
			t.Errorf("go list did not report %s", m)
		} else if len(d) > 0 {
			t.Errorf("service binary %s links local-only packages: %v", m, d)
		}
	}
	if !slices.Contains(deps[canary], module+"/devkit/devoidc") {
		t.Errorf("the check did not catch %s linking devkit/devoidc (found %v): it cannot fail", canary, deps[canary])
	}
}

// goEnvGOWORK is the workspace file go uses at root: anything but the repository's go.work
// (GOWORK=off, another file) would resolve the packages differently from the build.
func goEnvGOWORK(t *testing.T, root string) string {
	t.Helper()
	cmd := exec.Command("go", "env", "GOWORK")
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go env GOWORK: %v", err)
	}
	return string(out)
}
