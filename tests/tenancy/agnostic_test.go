// Package tenancy holds the tests that keep tenants data: no production Go code names a
// tenant, so a tenant added to the topology needs no code change.
package tenancy

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/ztbank/ztbank/devkit/localspire"
	"github.com/ztbank/ztbank/libs/topology"
)

// scanned are the trees whose non-test Go code must be tenant-agnostic: the services and the
// production library. Local-only tooling (devkit/) may name the demo tenants.
var scanned = []string{"services", "libs"}

// TestNoTenantLiterals reads every tenant, and its database name, from the committed
// topology and fails on any occurrence in non-test Go source under services/ and the
// production library, comments included, as grep would find it. A tenant added to the
// topology (bank-c) is covered without touching this test.
func TestNoTenantLiterals(t *testing.T) {
	root := repoRoot(t)
	topo, err := topology.Load(filepath.Join(root, "libs", "topology", "topology.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	literals := tenantLiterals(topo)
	var found []string
	files := 0
	for _, top := range scanned {
		err := filepath.WalkDir(filepath.Join(root, top), func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			rel := filepath.ToSlash(strings.TrimPrefix(path, root+string(filepath.Separator)))
			if d.IsDir() {
				if d.Name() == "testdata" {
					return filepath.SkipDir
				}
				return nil
			}
			if !strings.HasSuffix(rel, ".go") || strings.HasSuffix(rel, "_test.go") {
				return nil
			}
			src, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			files++
			found = append(found, findLiterals(rel, src, literals)...)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if files < 50 {
		t.Fatalf("scanned only %d files under %v: the walk is not reading the tree", files, scanned)
	}
	if len(found) > 0 {
		t.Errorf("%d tenant literal(s) in production Go code; name callers and peers by service within the workload's own tenant (authz.FromSameTenant, Runtime.SameTenantPeer) and take tenants from the topology:\n%s",
			len(found), strings.Join(found, "\n"))
	}
}

// tenantLiterals lists what counts as naming a tenant: its name and its database's name.
func tenantLiterals(topo *topology.Topology) []string {
	var out []string
	for _, tn := range topo.Tenants {
		out = append(out, tn.Name, tn.Database)
	}
	return out
}

// findLiterals reports each line of src that names one of literals as a whole word: not
// inside a longer identifier or name (ztbank_authz does not name bank_a, bank-ab is not
// bank-a), but anywhere else (alice@bank-a, "bank-a/gateway", migrations/bank_a).
func findLiterals(file string, src []byte, literals []string) []string {
	if len(literals) == 0 {
		return nil
	}
	quoted := make([]string, len(literals))
	for i, l := range literals {
		quoted[i] = regexp.QuoteMeta(l)
	}
	re := regexp.MustCompile(`(?:^|[^A-Za-z0-9_-])(` + strings.Join(quoted, "|") + `)(?:$|[^A-Za-z0-9_-])`)
	var out []string
	for i, line := range strings.Split(string(src), "\n") {
		if m := re.FindStringSubmatch(line); m != nil {
			out = append(out, fmt.Sprintf("%s:%d: %s: %s", file, i+1, m[1], strings.TrimSpace(line)))
		}
	}
	return out
}

// TestFindLiterals proves the scanner can fail: it finds a third tenant from a fixture
// topology, in code and in comments, and leaves longer names alone.
func TestFindLiterals(t *testing.T) {
	topo, err := topology.Parse("fixture.yaml", []byte(`trust_domain: example.org
platform_namespace: platform
tenants:
  - name: bank-c
    database: bank_c
workloads:
  - name: bank-c/gateway
    tenant: bank-c
    service: gateway
    listen: 127.0.0.1:1
    health: 127.0.0.1:2
    calls: [bank-c/payment, bank-c/ledger]
  - name: bank-c/payment
    tenant: bank-c
    service: payment
    listen: 127.0.0.1:3
    health: 127.0.0.1:4
    calls: [bank-c/ledger]
  - name: bank-c/ledger
    tenant: bank-c
    service: ledger
    listen: 127.0.0.1:5
    health: 127.0.0.1:6
`))
	if err != nil {
		t.Fatal(err)
	}
	literals := tenantLiterals(topo)
	for _, tc := range []struct {
		name, src string
		want      []string
	}{
		{"peer by tenant name", `p, err := rt.Peer("bank-c/ledger")`, []string{`x.go:1: bank-c: p, err := rt.Peer("bank-c/ledger")`}},
		{"route caller", `az.Require("ledger:post", authz.From("bank-c/payment"))`, []string{`x.go:1: bank-c: az.Require("ledger:post", authz.From("bank-c/payment"))`}},
		{"comment", "x := 1\n// serves bank-c only", []string{"x.go:2: bank-c: // serves bank-c only"}},
		{"database name", `dsn := "dbname=bank_c"`, []string{`x.go:1: bank_c: dsn := "dbname=bank_c"`}},
		{"email domain", `"alice@bank-c"`, []string{`x.go:1: bank-c: "alice@bank-c"`}},
		{"longer name", `const metric = "ztbank_c_total"; var bank_cx, xbank_c, bank-cd = 1`, nil},
		{"by role", `rt.SameTenantPeer("ledger")`, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, findLiterals("x.go", []byte(tc.src), literals)); diff != "" {
				t.Errorf("findLiterals() mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

// repoRoot is the directory holding go.work, found upwards from the test's directory.
func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := localspire.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	return root
}
