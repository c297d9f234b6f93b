package authz

import (
	"context"
	"fmt"
	"io/fs"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/cover"
	"github.com/open-policy-agent/opa/v1/storage/inmem"
	"github.com/open-policy-agent/opa/v1/tester"
)

// regoRun is the outcome of running a policy directory's Rego unit tests.
type regoRun struct {
	results  []*tester.Result
	coverage cover.Report
}

// failures lists the tests that did not pass, with their error or failure trace.
func (r regoRun) failures() []string {
	var out []string
	for _, res := range r.results {
		if !res.Pass() {
			msg := res.Package + "." + res.Name
			if res.Error != nil {
				msg += ": " + res.Error.Error()
			} else if res.Fail {
				msg += ": failed " + string(res.Output)
			}
			out = append(out, msg)
		}
	}
	return out
}

// runRegoTests runs every test_* rule of the *_test.rego files in fsys against its modules
// and data.json, recording coverage of the policy modules.
func runRegoTests(ctx context.Context, fsys fs.FS) (regoRun, error) {
	src, err := loadPolicy(fsys, "test")
	if err != nil {
		return regoRun{}, err
	}
	modules := map[string]*ast.Module{}
	for name, m := range src.modules {
		modules[name] = m
	}
	for name, m := range src.tests {
		modules[name] = m
	}
	cov := cover.New()
	ch, err := tester.NewRunner().
		SetStore(inmem.NewFromObject(src.data)).
		SetCoverageQueryTracer(cov).
		SetDefaultRegoVersion(ast.RegoV1).CapturePrintOutput(true).
		RaiseBuiltinErrors(true).
		Run(ctx, modules)
	if err != nil {
		return regoRun{}, fmt.Errorf("run rego tests: %w", err)
	}
	var run regoRun
	for res := range ch {
		run.results = append(run.results, res)
	}
	policyOnly := map[string]*ast.Module{}
	for name, m := range src.modules {
		policyOnly[name] = m
	}
	run.coverage = cov.Report(policyOnly)
	return run, nil
}

// TestRegoPolicy runs the policy's Rego unit tests and fails on any failing test, and on any
// line of the policy that no test executes.
func TestRegoPolicy(t *testing.T) {
	run, err := runRegoTests(t.Context(), embedded)
	if err != nil {
		t.Fatal(err)
	}
	if len(run.results) < 20 {
		t.Fatalf("ran %d Rego tests; the suite has more, so the runner did not find them", len(run.results))
	}
	for _, f := range run.failures() {
		t.Errorf("Rego test failed: %s", f)
	}
	for _, res := range run.results {
		t.Logf("%-60s %s", res.Name, map[bool]string{true: "PASS", false: "FAIL"}[res.Pass()])
	}
	if fr := run.coverage.Files["authz.rego"]; fr == nil || len(fr.Covered) == 0 {
		t.Fatalf("no coverage recorded for authz.rego (files: %v), so uncovered rules would go unnoticed", run.coverage.Files)
	}
	for file, fr := range run.coverage.Files {
		for _, r := range fr.NotCovered {
			t.Errorf("%s:%d-%d is not covered by any Rego test", file, r.Start.Row, r.End.Row)
		}
	}
}

// TestRegoRunnerFailsOnFailingTest proves the harness above has teeth: a policy directory
// with one failing and one erroring test must report both.
func TestRegoRunnerFailsOnFailingTest(t *testing.T) {
	fsys := fstest.MapFS{}
	err := fs.WalkDir(embedded, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(embedded, p)
		fsys[p] = &fstest.MapFile{Data: b}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	fsys["broken_test.rego"] = &fstest.MapFile{Data: []byte(`package ztbank.broken_test

import data.ztbank.authz

test_customer_may_open_accounts if {
	authz.decision.allow with input as {"action": "accounts:open"}
}

test_division_by_zero if 1 / 0 == 1
`)}
	run, err := runRegoTests(t.Context(), fsys)
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Join(run.failures(), "\n")
	for _, want := range []string{"test_customer_may_open_accounts", "test_division_by_zero"} {
		if !strings.Contains(got, want) {
			t.Errorf("failures = %q, want it to name %s", got, want)
		}
	}
}
