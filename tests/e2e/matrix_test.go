package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/ztbank/ztbank/devkit/localspire"
)

// committedMatrix is where `make e2e` writes the matrix and the README links to.
const committedMatrix = "docs/isolation-matrix.md"

// TestMatrixUpToDate fails when docs/isolation-matrix.md (or its HTML twin) is not what
// the case generator and the rules produce now: the committed matrix must describe the
// suite that runs. Regenerate with `make e2e` (or go test ./tests/e2e -args -report=...).
func TestMatrixUpToDate(t *testing.T) {
	root, err := localspire.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	md, html := Matrix(Generate(topo, LiveRoutes(), ServiceRoutes, EdgeRoutes))
	if *flagReport != "" && target == nil {
		// Offline (-short) regeneration; a live run writes the same file from TestIsolation.
		if err := writeReport(reportPath(t, *flagReport), md, html); err != nil {
			t.Fatal(err)
		}
	}
	for path, want := range map[string]string{
		committedMatrix: md,
		strings.TrimSuffix(committedMatrix, ".md") + ".html": html,
	} {
		got, err := os.ReadFile(filepath.Join(root, path))
		if err != nil {
			t.Fatalf("%v: run make e2e to generate it", err)
		}
		if diff := cmp.Diff(want, string(got)); diff != "" {
			t.Errorf("%s is stale; run make e2e to regenerate it. mismatch (-want +got):\n%s", path, diff)
		}
	}
}
