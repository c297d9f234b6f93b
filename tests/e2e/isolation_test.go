package e2e

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/ztbank/ztbank/libs/localspire"
)

// TestIsolation runs every generated case against the deployment and compares the observed
// status and refusing layer with the rules' expectation, and checks that no response body
// names a resource the caller may not see.
func TestIsolation(t *testing.T) {
	d := needLive(t)
	cases := Generate(topo, LiveRoutes())
	start := time.Now()
	var passed, failed, skipped atomic.Int64
	t.Run("cases", func(t *testing.T) {
		for _, c := range cases {
			t.Run(c.Name(), func(t *testing.T) {
				t.Parallel()
				ok := checkCase(t, d, c)
				switch {
				case t.Skipped():
					skipped.Add(1)
				case ok && !t.Failed():
					passed.Add(1)
				default:
					failed.Add(1)
				}
			})
		}
	})
	fmt.Printf("e2e: %d cases (%d through the edge, %d direct): %d passed, %d failed, %d skipped in %s\n",
		len(cases), countFront(cases), len(cases)-countFront(cases), passed.Load(), failed.Load(), skipped.Load(),
		time.Since(start).Round(time.Millisecond))
	if *flagReport != "" {
		md, html := Matrix(cases)
		if err := writeReport(reportPath(t, *flagReport), md, html); err != nil {
			t.Fatal(err)
		}
		fmt.Printf("e2e: wrote %s and its HTML twin\n", *flagReport)
	}
}

func countFront(cases []Case) int {
	n := 0
	for _, c := range cases {
		if !c.Direct {
			n++
		}
	}
	return n
}

// checkCase runs c and reports whether it passed.
func checkCase(t *testing.T, d *deployment, c Case) bool {
	t.Helper()
	obs, echo, err := d.run(context.Background(), c)
	if errors.Is(err, errCannotMint) {
		t.Skip(err)
	}
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	ok := true
	if diff := cmp.Diff(c.Want, obs.Expectation()); diff != "" {
		t.Errorf("%s: outcome mismatch (-want +got):\n%s\nbody: %.300s\nerr: %v", c.Name(), diff, obs.Body, obs.Err)
		ok = false
	}
	if obs.Layer == LayerPolicy && obs.DecisionID == "" {
		t.Errorf("%s: policy refusal without a decision_id", c.Name())
		ok = false
	}
	if l := leaks(obs.Body, echo, Foreign(c.Identity)); len(l) > 0 {
		t.Errorf("%s: body names resources the caller may not see %q:\n%.500s", c.Name(), l, obs.Body)
		ok = false
	}
	return ok
}

func writeReport(mdPath, md, html string) error {
	if err := os.MkdirAll(filepath.Dir(mdPath), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(mdPath, []byte(md), 0o644); err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	htmlPath := strings.TrimSuffix(mdPath, filepath.Ext(mdPath)) + ".html"
	if err := os.WriteFile(htmlPath, []byte(html), 0o644); err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	return nil
}

// reportPath resolves a relative -report against the repository root: go test runs in the
// package directory, but `make e2e` names docs/isolation-matrix.md from the root.
func reportPath(t *testing.T, p string) string {
	if filepath.IsAbs(p) {
		return p
	}
	root, err := localspire.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Join(root, p)
}
