// Command depcheck fails when the workspace's modules require different versions of a
// shared dependency. Two services on different go-spiffe or OPA versions would verify
// identities or evaluate policy differently, so drift is a build failure, not a warning.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
)

func main() {
	if err := run(context.Background(), os.Args, os.Getenv, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintf(os.Stderr, "depcheck: %v\n", err)
		os.Exit(1)
	}
}

// shared lists module path prefixes that must be at one version everywhere they appear.
var shared = []string{
	"github.com/spiffe/go-spiffe/",
	"github.com/open-policy-agent/opa",
	"github.com/jackc/pgx/",
	"go.opentelemetry.io/otel",
	"github.com/go-chi/chi/",
	"github.com/prometheus/client_golang",
	"github.com/go-jose/go-jose/",
	"github.com/coreos/go-oidc/",
	"github.com/zitadel/oidc/",
	"github.com/aws/aws-sdk-go-v2",
	"github.com/google/go-cmp",
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	root := "."
	if len(args) > 1 {
		root = args[1]
	}
	mods, err := findModules(root)
	if err != nil {
		return err
	}
	reqs := map[string]map[string]string{} // module file → dep → version
	for _, m := range mods {
		r, err := requirements(ctx, m)
		if err != nil {
			return err
		}
		reqs[m] = r
	}
	problems := Drift(reqs)
	for _, p := range problems {
		fmt.Fprintln(stderr, p)
	}
	if len(problems) > 0 {
		return fmt.Errorf("%d shared dependencies at more than one version; run `make tidy`", len(problems))
	}
	fmt.Fprintf(stdout, "depcheck: %d modules agree on shared dependency versions\n", len(mods))
	return nil
}

// Drift returns one line per shared dependency required at more than one version.
func Drift(reqs map[string]map[string]string) []string {
	versions := map[string]map[string][]string{} // dep → version → modules
	for mod, r := range reqs {
		for dep, v := range r {
			if !isShared(dep) {
				continue
			}
			if versions[dep] == nil {
				versions[dep] = map[string][]string{}
			}
			versions[dep][v] = append(versions[dep][v], mod)
		}
	}
	var out []string
	for dep, vs := range versions {
		if len(vs) < 2 {
			continue
		}
		var parts []string
		for v, ms := range vs {
			sort.Strings(ms)
			parts = append(parts, fmt.Sprintf("%s (%s)", v, strings.Join(ms, ", ")))
		}
		sort.Strings(parts)
		out = append(out, fmt.Sprintf("%s: %s", dep, strings.Join(parts, " vs ")))
	}
	sort.Strings(out)
	return out
}

func isShared(dep string) bool {
	for _, p := range shared {
		if strings.HasPrefix(dep, p) {
			return true
		}
	}
	return false
}

// findModules lists every go.mod under root except vendored tool graphs (tools/spire,
// tools/jaeger, tools/kube and tools/compose pin SPIRE's, Jaeger's, Kubernetes' and Docker
// Compose's own dependency graphs, which are their business, not ours).
func findModules(root string) ([]string, error) {
	var mods []string
	err := filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (strings.HasPrefix(d.Name(), ".") && p != root || p == filepath.Join(root, "tools", "spire") || p == filepath.Join(root, "tools", "jaeger") || p == filepath.Join(root, "tools", "kube") || p == filepath.Join(root, "tools", "compose")) {
			return filepath.SkipDir
		}
		if d.Name() == "go.mod" {
			mods = append(mods, p)
		}
		return nil
	})
	if len(mods) == 0 && err == nil {
		err = errors.New("no go.mod found")
	}
	return mods, err
}

func requirements(ctx context.Context, gomod string) (map[string]string, error) {
	out, err := exec.CommandContext(ctx, "go", "mod", "edit", "-json", gomod).Output()
	if err != nil {
		return nil, fmt.Errorf("go mod edit -json %s: %w", gomod, err)
	}
	var f struct {
		Require []struct{ Path, Version string }
	}
	if err := json.Unmarshal(out, &f); err != nil {
		return nil, fmt.Errorf("%s: %w", gomod, err)
	}
	r := map[string]string{}
	for _, q := range f.Require {
		r[q.Path] = q.Version
	}
	return r, nil
}
