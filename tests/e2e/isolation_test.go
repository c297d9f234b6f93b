package e2e

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/ztbank/ztbank/devkit/demo"
	"github.com/ztbank/ztbank/devkit/localspire"
)

// TestIsolation runs every generated case against the deployment and compares the observed
// status and refusing layer (read from the layer's own mark) with the rules' expectation,
// and checks that no response body names a resource the caller may not see. Before the
// cases it checks that the route tables cover every route the running services serve; after
// them, that each service's own count of handshakes its allowlist refused grew by exactly
// the cases the rules send to its handshake.
func TestIsolation(t *testing.T) {
	d := needLive(t)
	ctx := context.Background()
	cases := Generate(topo, LiveRoutes(), ServiceRoutes, EdgeRoutes)

	var served servedRoutes
	t.Run("route coverage", func(t *testing.T) {
		if !d.local() {
			// Route tables are read from each workload's health port, which a remote
			// deployment does not expose to the suite; locally this step never skips.
			t.Skip("route coverage needs the workloads' health ports; run it against a local stack")
		}
		var err error
		if served, err = d.scrapeServed(ctx); err != nil {
			t.Fatal(err)
		}
		for _, p := range coverage(topo, workloadCalls, served, cases) {
			t.Error(p)
		}
		checkRouteDeletionsCaught(t, served)
	})

	var refusedBefore map[string]float64
	if d.local() {
		var err error
		if refusedBefore, err = d.handshakeRefusals(ctx); err != nil {
			t.Fatal(err)
		}
	}

	start := time.Now()
	var passed, failed, skipped atomic.Int64
	t.Run("cases", func(t *testing.T) {
		for _, c := range cases {
			t.Run(c.Name(), func(t *testing.T) {
				// Counted in Cleanup, which runs however the case ends (t.Fatal, t.Skip, a
				// panic), so the summary counts every case that started.
				t.Cleanup(func() {
					switch {
					case t.Failed():
						failed.Add(1)
					case t.Skipped():
						skipped.Add(1)
					default:
						passed.Add(1)
					}
				})
				t.Parallel()
				checkCase(t, d, c)
			})
		}
	})
	elapsed := time.Since(start).Round(time.Millisecond)

	if d.local() {
		t.Run("handshake refusals counted by the servers", func(t *testing.T) {
			after, err := d.handshakeRefusals(ctx)
			if err != nil {
				t.Fatal(err)
			}
			want := map[string]float64{}
			for w := range after {
				want[w] = 0
			}
			for _, c := range cases {
				if c.Want.Layer == LayerMTLS {
					want[c.Route.Service]++
				}
			}
			got := map[string]float64{}
			for w, n := range after {
				got[w] = n - refusedBefore[w]
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("allowlist refusals per service during the cases (ztbank_mtls_handshake_failures_total{reason=\"not_allowed\"}) mismatch (-want +got):\n%s", diff)
			}
		})
	}

	ran := passed.Load() + failed.Load() + skipped.Load()
	front, direct, edge := countKinds(cases)
	fmt.Printf("e2e: %d cases (%d through the edge, %d direct, %d on the edge's own routes): %d passed, %d failed, %d skipped, %d not run in %s\n",
		len(cases), front, direct, edge, passed.Load(), failed.Load(), skipped.Load(), int64(len(cases))-ran, elapsed)
	if ran != int64(len(cases)) {
		t.Errorf("%d of %d cases never ran", int64(len(cases))-ran, len(cases))
	}
	if d.local() && skipped.Load() > 0 {
		t.Errorf("%d cases skipped against %s: a local stack can run every case, so a skip is a failure", skipped.Load(), d.name)
	}
	if *flagReport != "" {
		md, html := Matrix(cases)
		if err := writeReport(reportPath(t, *flagReport), md, html); err != nil {
			t.Fatal(err)
		}
		fmt.Printf("e2e: wrote %s and its HTML twin\n", *flagReport)
	}
}

func countKinds(cases []Case) (front, direct, edge int) {
	for _, c := range cases {
		switch {
		case c.Edge != nil:
			edge++
		case c.Direct:
			direct++
		default:
			front++
		}
	}
	return front, direct, edge
}

// checkCase runs c and fails t unless the outcome, the refusing layer (from its mark) and
// the body are what the rules say. It also re-marks the real answer as every other layer's
// and requires the comparison to fail on each: a layer refusing under another's mark cannot
// pass.
func checkCase(t *testing.T, d *deployment, c Case) {
	t.Helper()
	obs, echo, err := d.run(context.Background(), c)
	if errors.Is(err, errCannotMint) {
		t.Skip(err)
	}
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	if diff := cmp.Diff(c.Want, obs.Expectation()); diff != "" {
		t.Errorf("%s: outcome mismatch (-want +got):\n%s\ntype: %s alert: %s\nbody: %.300s\nerr: %v", c.Name(), diff, obs.ProblemType, obs.Alert, obs.Body, obs.Err)
		return
	}
	if obs.Layer == LayerPolicy && obs.DecisionID == "" {
		t.Errorf("%s: policy refusal without a decision_id", c.Name())
	}
	viewer := c.Identity
	if c.Call != nil {
		u, _ := demo.UserByName(c.Call.User)
		viewer = Identity{Kind: EndUser, User: u}
	}
	if c.Edge != nil && c.Edge.User != "" {
		u, _ := demo.UserByName(c.Edge.User)
		viewer = Identity{Kind: EndUser, User: u}
	}
	if l := leaks(obs.Body, echo, Foreign(viewer)); len(l) > 0 {
		t.Errorf("%s: body names resources the caller may not see %q:\n%.500s", c.Name(), l, obs.Body)
	}
	if obs.Layer == LayerNone {
		return
	}
	for _, other := range refusingLayers() {
		if other == obs.Layer {
			continue
		}
		if re := remarked(obs, other); cmp.Equal(c.Want, re.Expectation()) {
			t.Errorf("%s: the same answer under %s's mark (%s) still passes: the layer is not read from the mark", c.Name(), other, re.Layer)
		}
	}
}

// refusingLayers is every layer that leaves a mark, the handshake included.
func refusingLayers() []Layer {
	out := []Layer{LayerMTLS}
	for l := range layerMarks {
		out = append(out, l)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
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
