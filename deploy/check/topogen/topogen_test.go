package topogen_test

import (
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/ztbank/ztbank/deploy/check/topogen"
	"github.com/ztbank/ztbank/libs/topology"
)

var generatedDir = filepath.Join("..", "..", "k8s", "generated")

// TestCommittedFilesMatchTopology fails when libs/topology/topology.yaml changed but
// `make generate` was not run (or a generated file was edited by hand).
func TestCommittedFilesMatchTopology(t *testing.T) {
	files, err := topogen.Files(topology.Default())
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, f := range files {
		want = append(want, f.Name)
		got, err := os.ReadFile(filepath.Join(generatedDir, f.Name))
		if err != nil {
			t.Errorf("%v (run make generate)", err)
			continue
		}
		if diff := cmp.Diff(string(f.Body), string(got)); diff != "" {
			t.Errorf("%s drifted from the topology; run make generate. mismatch (-want +got):\n%s", f.Name, diff)
		}
	}
	err = filepath.WalkDir(generatedDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, err := filepath.Rel(generatedDir, p)
		if err != nil {
			return err
		}
		if !slices.Contains(want, filepath.ToSlash(rel)) {
			t.Errorf("stale generated file %s: the generator no longer writes it; delete it", rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestDriftIsDetected edits the topology (a new call edge) and checks the generator output
// changes in exactly the enforcement files, so the drift test above can fail.
func TestDriftIsDetected(t *testing.T) {
	base, err := topogen.Files(topology.Default())
	if err != nil {
		t.Fatal(err)
	}
	edited := strings.Replace(string(topology.Embedded()),
		"    database_role: account_svc\n",
		"    database_role: account_svc\n    calls: [bank-a/user]\n", 1)
	if edited == string(topology.Embedded()) {
		t.Fatal("test edit did not apply; update the anchor string")
	}
	tp, err := topology.Parse("edited.yaml", []byte(edited))
	if err != nil {
		t.Fatal(err)
	}
	changed, err := topogen.Files(tp)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for i := range base {
		if string(base[i].Body) != string(changed[i].Body) {
			got = append(got, base[i].Name)
		}
	}
	want := []string{"authorizationpolicies.yaml", "networkpolicies.yaml"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("files changed by a new edge mismatch (-want +got):\n%s", diff)
	}
}
