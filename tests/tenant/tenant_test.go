//go:build tenantstack

package tenant

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/ztbank/ztbank/devkit/localspire"
)

const newTenant = "bank-c"

// TestNewTenantEndToEnd is the proof that a tenant is data: in a copy of the tree
// (the files git tracks or would, as they are in the working tree), `make tenant NEW=bank-c` with the
// default, full-service catalogue; the isolation suite against the local stack that copy
// starts (the in-process stack `make dev` runs, on free ports), which must pass with no
// failure or skip and with bank-c's identities crossing into bank-a and bank-b and back;
// then `make tenant REMOVE=bank-c`, after which every file is as it was.
func TestNewTenantEndToEnd(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Minute)
	defer cancel()
	root, err := localspire.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	spireBin, err := localspire.Binaries(ctx, os.Stderr)
	if err != nil {
		t.Fatal(err)
	}
	dst := t.TempDir()
	copyTracked(t, root, dst)
	before := treeHashes(t, dst)
	casesBefore := matrixCases(t, dst)

	start := time.Now()
	runIn(ctx, t, dst, nil, "make", "--no-print-directory", "tenant", "NEW="+newTenant)
	t.Logf("make tenant NEW=%s: %s", newTenant, time.Since(start).Round(time.Second))
	casesAfter := matrixCases(t, dst)
	t.Logf("isolation matrix: %d cases with two tenants, %d with three", casesBefore, casesAfter)
	if casesAfter <= casesBefore {
		t.Fatalf("the matrix did not grow: %d cases before, %d after", casesBefore, casesAfter)
	}

	// The suite as `make e2e` runs it, in-process stack included, with -json so every case's
	// outcome can be counted here.
	start = time.Now()
	// A failed case is an error, not the end: the summary and the removal are still checked.
	out := runInOrError(ctx, t, dst, []string{"ZTBANK_SPIRE_BIN=" + spireBin}, "go", "test", "-count=1", "-json", "-timeout", "35m",
		"./tests/e2e", "-args", "-report=docs/isolation-matrix.md")
	t.Logf("isolation suite with %s: %s", newTenant, time.Since(start).Round(time.Second))
	sum := summarise(t, out)
	t.Logf("%s", sum.line)
	t.Logf("cases naming %s and another tenant: %d passed, %d failed (identities and routes of %s against bank-a and bank-b, and theirs against %s)",
		newTenant, sum.crossPassed, sum.crossFailed, newTenant, newTenant)
	if sum.crossPassed == 0 || sum.crossFailed > 0 {
		t.Errorf("cross-tenant cases with %s: %d passed, %d failed; want some, all passing", newTenant, sum.crossPassed, sum.crossFailed)
	}
	if sum.total != casesAfter {
		t.Errorf("the suite ran %d cases, the regenerated matrix promises %d", sum.total, casesAfter)
	}

	runIn(ctx, t, dst, nil, "make", "--no-print-directory", "tenant", "REMOVE="+newTenant)
	if diff := cmp.Diff(before, treeHashes(t, dst)); diff != "" {
		t.Errorf("make tenant REMOVE=%s did not restore the tree (-before +after):\n%s", newTenant, diff)
	}
}

// copyTracked copies the working tree's files under src to dst: those git tracks and the new
// ones it does not ignore, as a fresh clone of the tree being tested would hold them.
func copyTracked(t *testing.T, src, dst string) {
	t.Helper()
	cmd := exec.Command("git", "ls-files", "-z", "--cached", "--others", "--exclude-standard")
	cmd.Dir = src
	list, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range strings.Split(strings.TrimRight(string(list), "\x00"), "\x00") {
		b, err := os.ReadFile(filepath.Join(src, f))
		if os.IsNotExist(err) {
			continue // deleted in the working tree
		}
		if err != nil {
			t.Fatal(err)
		}
		info, err := os.Stat(filepath.Join(src, f))
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dst, f)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, b, info.Mode().Perm()); err != nil {
			t.Fatal(err)
		}
	}
}

// treeHashes maps every file under root (but .dev, the stack's state) to its SHA-256.
func treeHashes(t *testing.T, root string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if d.IsDir() {
			if rel == ".dev" {
				return filepath.SkipDir
			}
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		out[rel] = fmt.Sprintf("%x", sha256.Sum256(b))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

var casesLine = regexp.MustCompile(`(?m)^(\d+) cases: `)

// matrixCases reads the case count the committed matrix states.
func matrixCases(t *testing.T, root string) int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, "docs/isolation-matrix.md"))
	if err != nil {
		t.Fatal(err)
	}
	m := casesLine.FindSubmatch(b)
	if m == nil {
		t.Fatal("docs/isolation-matrix.md states no case count")
	}
	n, _ := strconv.Atoi(string(m[1]))
	return n
}

// runIn runs a command in dir and returns its output; a failure ends the test with the
// output's tail.
func runIn(ctx context.Context, t *testing.T, dir string, env []string, name string, args ...string) []byte {
	t.Helper()
	return run(ctx, t, t.Fatalf, dir, env, name, args...)
}

// runInOrError is runIn with a failure that the test reports and goes on from.
func runInOrError(ctx context.Context, t *testing.T, dir string, env []string, name string, args ...string) []byte {
	t.Helper()
	return run(ctx, t, t.Errorf, dir, env, name, args...)
}

func run(ctx context.Context, t *testing.T, fail func(string, ...any), dir string, env []string, name string, args ...string) []byte {
	t.Helper()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	// -trimpath keeps the build cache's keys free of the copy's directory, so a second run
	// (and the main tree's own -trimpath builds) reuse the compiled packages.
	cmd.Env = append(append(os.Environ(), "GOFLAGS=-trimpath"), env...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		// The whole output goes to a file that outlives the test's temporary directory; the
		// failure shows the failed tests' lines and the end of the output.
		log := filepath.Join(os.TempDir(), "ztbank-tenant-test-"+filepath.Base(name)+".log")
		_ = os.WriteFile(log, out.Bytes(), 0o644)
		text := tail(out.Bytes())
		var failed []string
		for _, l := range strings.Split(text, "\n") {
			if strings.Contains(l, "--- FAIL") || strings.HasPrefix(strings.TrimSpace(l), "e2e:") || strings.Contains(l, "_test.go:") {
				failed = append(failed, l)
			}
		}
		if len(failed) > 200 {
			failed = failed[:200]
		}
		if len(text) > 4000 {
			text = text[len(text)-4000:]
		}
		fail("%s %s: %v (whole output: %s)\n%s\n...\n%s", name, strings.Join(args, " "), err, log, strings.Join(failed, "\n"), text)
	}
	return out.Bytes()
}

// tail keeps the lines of a go test -json stream that a person reads.
func tail(b []byte) string {
	var s strings.Builder
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var ev struct{ Output string }
		if json.Unmarshal(sc.Bytes(), &ev) == nil && ev.Output != "" {
			s.WriteString(ev.Output)
			continue
		}
		s.Write(sc.Bytes())
		s.WriteByte('\n')
	}
	return s.String()
}

type summary struct {
	line                     string
	total                    int
	crossPassed, crossFailed int
}

var summaryLine = regexp.MustCompile(`e2e: (\d+) cases \(.*\): (\d+) passed, (\d+) failed, (\d+) skipped, (\d+) not run`)

// summarise reads the suite's summary line (which must report every case passed) and
// counts the cases that name the new tenant and one of the others.
func summarise(t *testing.T, stream []byte) summary {
	t.Helper()
	var s summary
	sc := bufio.NewScanner(bytes.NewReader(stream))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var ev struct{ Action, Test, Output string }
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			continue
		}
		if m := summaryLine.FindStringSubmatch(ev.Output); m != nil {
			s.line = strings.TrimSpace(ev.Output)
			s.total, _ = strconv.Atoi(m[1])
			if m[3] != "0" || m[4] != "0" || m[5] != "0" {
				t.Errorf("suite summary: %s", s.line)
			}
		}
		if !strings.HasPrefix(ev.Test, "TestIsolation/cases/") || !strings.Contains(ev.Test, newTenant) ||
			!(strings.Contains(ev.Test, "bank-a") || strings.Contains(ev.Test, "bank-b")) {
			continue
		}
		switch ev.Action {
		case "pass":
			s.crossPassed++
		case "fail":
			s.crossFailed++
		}
	}
	if s.line == "" {
		t.Fatalf("the suite printed no summary line:\n%s", tail(stream))
	}
	return s
}
