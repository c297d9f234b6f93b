// Package benchtag keeps tools/pathbench's bench-only builds out of production. The build
// tag ztbench_off turns zero trust off (plain HTTP between workloads, no internal-JWT
// verification, no policy, no audit) so the request path can be measured without it, and
// ztbench_pprof serves net/http/pprof; only the harness may build with them.
package benchtag

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/ztbank/ztbank/devkit/localspire"
)

var tags = []string{"ztbench_off", "ztbench_pprof"}

// mayMention are the only files that may name the tags: the tagged library files, the
// harness, its make target, this test and documentation. Anything else that does (a
// Dockerfile, the image builder, compose, a manifest, the Makefile) could ship a binary with
// zero trust switched off.
func mayMention(rel string) bool {
	base := filepath.Base(rel)
	switch {
	case strings.HasPrefix(rel, "libs/") && (strings.HasPrefix(base, "benchoff") || base == "benchpprof.go"):
		return true
	case strings.HasPrefix(rel, "tools/pathbench/"), strings.HasPrefix(rel, "tests/benchtag/"), strings.HasPrefix(rel, "docs/"):
		return true
	case rel == "mk/benchpath.mk", rel == "README.md":
		return true
	}
	return false
}

func root(t *testing.T) string {
	t.Helper()
	r, err := localspire.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// TestOnlyTheHarnessNamesTheBenchTags scans every file of the repository.
func TestOnlyTheHarnessNamesTheBenchTags(t *testing.T) {
	r := root(t)
	var bad []string
	err := filepath.WalkDir(r, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if name := d.Name(); path != r && (strings.HasPrefix(name, ".") || name == "node_modules") {
				return filepath.SkipDir
			}
			return nil
		}
		info, err := d.Info()
		if err != nil || !info.Mode().IsRegular() || info.Size() > 4<<20 {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(r, path)
		rel = filepath.ToSlash(rel)
		if slices.ContainsFunc(tags, func(tag string) bool { return bytes.Contains(b, []byte(tag)) }) && !mayMention(rel) {
			bad = append(bad, rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(bad) > 0 {
		t.Errorf("these files name a bench-only build tag (%v); only tools/pathbench may build with them:\n  %s",
			tags, strings.Join(bad, "\n  "))
	}
}

// goFiles lists, for every package the service binaries link, the Go files go build would
// compile with the given tags.
func goFiles(t *testing.T, r string, buildTags string) []string {
	t.Helper()
	args := []string{"list", "-deps", "-f", `{{.Dir}}|{{join .GoFiles " "}}`}
	if buildTags != "" {
		args = append(args, "-tags", buildTags)
	}
	cmd := exec.Command("go", append(args, "./services/...")...)
	cmd.Dir = r
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, stderr.String())
	}
	var files []string
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		dir, names, _ := strings.Cut(line, "|")
		for _, n := range strings.Fields(names) {
			rel, _ := filepath.Rel(r, filepath.Join(dir, n))
			files = append(files, filepath.ToSlash(rel))
		}
	}
	return files
}

// TestServiceBuildsCarryNoBenchCode: built as production builds them (no tags), no service
// binary compiles a bench-only file; built with ztbench_off, they do, so the check can fail.
func TestServiceBuildsCarryNoBenchCode(t *testing.T) {
	r := root(t)
	isBench := func(f string) bool {
		b := filepath.Base(f)
		return (strings.HasPrefix(b, "benchoff") && !strings.HasSuffix(b, "_on.go")) || b == "benchpprof.go"
	}
	var linked []string
	for _, f := range goFiles(t, r, "") {
		if isBench(f) {
			linked = append(linked, f)
		}
	}
	if len(linked) > 0 {
		t.Errorf("an untagged service build compiles bench-only files: %v", linked)
	}
	want := []string{"libs/authz/benchoff.go", "libs/transport/benchoff.go", "libs/usertoken/benchoff.go"}
	var got []string
	for _, f := range goFiles(t, r, "ztbench_off") {
		if isBench(f) && !slices.Contains(got, f) {
			got = append(got, f)
		}
	}
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Errorf("with -tags ztbench_off the services compile %v, want %v", got, want)
	}
}

// TestBenchOffBinaryRefusesToStart builds a service with ztbench_off and runs it as a
// deployment would, without the harness's consent variable: it must exit at once, saying
// why, before reading any configuration, and the tag must show in its build information.
func TestBenchOffBinaryRefusesToStart(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a service binary")
	}
	r := root(t)
	bin := filepath.Join(t.TempDir(), "account")
	build := exec.Command("go", "build", "-tags", "ztbench_off", "-o", bin, "./services/account")
	build.Dir = r
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	cmd := exec.Command(bin)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 70 {
		t.Fatalf("ztbench_off binary without consent: err %v, want exit status 70; output:\n%s", err, out)
	}
	if !strings.Contains(string(out), "zero trust disabled") {
		t.Errorf("refusal does not say why:\n%s", out)
	}
	info, err := exec.Command("go", "version", "-m", bin).Output()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(info), "-tags=ztbench_off") {
		t.Errorf("go version -m does not show the tag:\n%s", info)
	}
}
