package main

import (
	"bytes"
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"text/template"

	"github.com/google/go-cmp/cmp"

	"github.com/ztbank/ztbank/devkit/localspire"
	"github.com/ztbank/ztbank/libs/topology"
)

// repoRoot is the repository this test runs in.
func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := localspire.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// editedFiles are the files the command reads or writes, besides the migrations.
var editedFiles = []string{topologyFile, "tests/e2e/rules.go", "tests/e2e/routes.go", "tests/e2e/served.go"}

// copyTree copies the files the command edits, and the migrations, into a temporary root.
func copyTree(t *testing.T) string {
	t.Helper()
	src, dst := repoRoot(t), t.TempDir()
	for _, f := range editedFiles {
		b, err := os.ReadFile(filepath.Join(src, f))
		if err != nil {
			t.Fatal(err)
		}
		writeFile(t, filepath.Join(dst, f), b)
	}
	err := filepath.WalkDir(filepath.Join(src, migrationsDir), func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		writeFile(t, filepath.Join(dst, rel), b)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return dst
}

func writeFile(t *testing.T, p string, b []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// snapshot maps every file under root to its contents.
func snapshot(t *testing.T, root string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if d.IsDir() {
			out[rel+"/"] = ""
			return nil
		}
		b, err := os.ReadFile(p)
		out[rel] = string(b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func runTool(root string, args ...string) (string, error) {
	var stdout, stderr bytes.Buffer
	err := run(context.Background(), append(append([]string{"tenant"}, args...), "-root", root), os.Getenv, &stdout, &stderr)
	return stdout.String(), err
}

// TestAddThenRemoveRestoresTheTree: for each choice of services, adding a tenant gives a
// topology that parses with it and the suite's rows for it, and removing it gives back
// every file byte for byte (and no extra file or directory).
func TestAddThenRemoveRestoresTheTree(t *testing.T) {
	for _, tc := range []struct {
		name, services string
		workloads      []string
		migrations     []string
	}{
		{"bank-q", "", []string{"bank-q/gateway", "bank-q/user", "bank-q/account", "bank-q/payment", "bank-q/ledger"},
			[]string{"0001_database", "0002_users", "0003_accounts", "0004_ledger", "0005_payments"}},
		{"bank-retail", "account,gateway,user", []string{"bank-retail/gateway", "bank-retail/user", "bank-retail/account"},
			[]string{"0001_database", "0002_users", "0003_accounts"}},
		{"pay9", "gateway,payment,ledger", []string{"pay9/gateway", "pay9/payment", "pay9/ledger"},
			[]string{"0001_database", "0002_ledger", "0003_payments"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := copyTree(t)
			before := snapshot(t, root)
			args := []string{"-new", tc.name}
			if tc.services != "" {
				args = append(args, "-services", tc.services)
			}
			if _, err := runTool(root, args...); err != nil {
				t.Fatal(err)
			}
			topo, err := topology.Load(filepath.Join(root, topologyFile))
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, w := range topo.Workloads {
				if w.Tenant == tc.name {
					got = append(got, w.Name)
				}
			}
			if diff := cmp.Diff(tc.workloads, got); diff != "" {
				t.Errorf("workloads mismatch (-want +got):\n%s", diff)
			}
			if edge, _ := topo.Workload("edge"); !topo.MayCall(edge.Name, tc.name+"/gateway") {
				t.Errorf("the edge may not call %s/gateway", tc.name)
			}
			if err := checkRolesUnique(topo); err != nil {
				t.Error(err)
			}
			var migs []string
			entries, _ := os.ReadDir(filepath.Join(root, migrationsDir, strings.ReplaceAll(tc.name, "-", "_")))
			for _, e := range entries {
				if n, ok := strings.CutSuffix(e.Name(), ".up.sql"); ok {
					migs = append(migs, n)
				}
			}
			if diff := cmp.Diff(tc.migrations, migs); diff != "" {
				t.Errorf("migrations mismatch (-want +got):\n%s", diff)
			}
			rules, _ := os.ReadFile(filepath.Join(root, "tests/e2e/rules.go"))
			if !strings.Contains(string(rules), `"edge":`) || !regexp.MustCompile(`"edge":\s+\{[^}]*"`+tc.name+`/gateway"\}`).Match(rules) {
				t.Errorf("workloadCalls' edge row does not name %s/gateway", tc.name)
			}
			for _, f := range editedFiles[1:] {
				b, _ := os.ReadFile(filepath.Join(root, f))
				if !strings.Contains(string(b), beginMarker(tc.name)) {
					t.Errorf("%s has no rows for %s", f, tc.name)
				}
			}

			if _, err := runTool(root, "-remove", tc.name); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(before, snapshot(t, root)); diff != "" {
				t.Errorf("add then remove changed the tree (-before +after):\n%s", diff)
			}
		})
	}
}

// TestBadInput: every refusal is one line, and nothing is written.
func TestBadInput(t *testing.T) {
	root := copyTree(t)
	before := snapshot(t, root)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{}, usage},
		{[]string{"-new", "bank-q", "-remove", "bank-a"}, usage},
		{[]string{"-new", "Bank-C"}, `tenant name "Bank-C": want 2-24 characters of a-z, 0-9 and -, starting with a letter`},
		{[]string{"-new", "bank--c"}, `tenant name "bank--c": want 2-24 characters of a-z, 0-9 and -, starting with a letter`},
		{[]string{"-new", "bank-a"}, `tenant "bank-a" already exists in libs/topology/topology.yaml`},
		{[]string{"-new", "bank-q", "-services", "gateway,vault"}, `service "vault" is not in the tenant catalogue (gateway, user, account, payment, ledger)`},
		{[]string{"-new", "bank-q", "-services", "gateway,user,user"}, `service "user" named twice`},
		{[]string{"-new", "bank-q", "-services", "gateway,user"}, `invalid topology: libs/topology/topology.yaml with bank-q:95: tenant "bank-q" runs user but not account, which user needs: add workload "bank-q/account"`},
		{[]string{"-new", "bank-q", "-services", "user,account"}, `invalid topology: libs/topology/topology.yaml with bank-q:18: tenant "bank-q" runs no gateway, the only way into a tenant: add workload "bank-q/gateway"`},
		{[]string{"-remove", "bank-z"}, `no tenant "bank-z" in libs/topology/topology.yaml`},
		{[]string{"-remove", "bank-b"}, `tests/e2e/rules.go holds no rows written by make tenant for bank-b: a tenant written by hand is removed by hand`},
		{[]string{"-remove", "bank-b", "-services", "gateway"}, `-services goes with -new, not -remove`},
	} {
		_, err := runTool(root, tc.args...)
		if err == nil {
			t.Errorf("%v: no error", tc.args)
			continue
		}
		if got := err.Error(); got != tc.want {
			t.Errorf("%v:\n got %q\nwant %q", tc.args, got, tc.want)
		}
		if strings.Contains(err.Error(), "\n") {
			t.Errorf("%v: error is not one line", tc.args)
		}
	}
	if diff := cmp.Diff(before, snapshot(t, root)); diff != "" {
		t.Errorf("a refused command changed the tree (-before +after):\n%s", diff)
	}
}

// TestTemplatesRenderReferenceMigrations: the templates, rendered for bank-a and bank-b with
// their roles, are their committed schema migrations byte for byte, and grant CONNECT to
// the same roles as their hand-written 0001_database; so the templates a new tenant gets
// cannot drift from the schemas the reference tenants run.
func TestTemplatesRenderReferenceMigrations(t *testing.T) {
	root := repoRoot(t)
	topo := topology.Default()
	grants := regexp.MustCompile(`(?m)^(GRANT|REVOKE) .*$`)
	for _, tn := range topo.Tenants {
		migs, err := renderMigrations(topo, tn.Name)
		if err != nil {
			t.Fatal(err)
		}
		rendered := map[string]string{}
		for _, m := range migs {
			rendered[m.name] = string(m.data)
		}
		committed := map[string]string{}
		entries, err := os.ReadDir(filepath.Join(root, migrationsDir, tn.Database))
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			b, err := os.ReadFile(filepath.Join(root, migrationsDir, tn.Database, e.Name()))
			if err != nil {
				t.Fatal(err)
			}
			committed[e.Name()] = string(b)
		}
		for name, want := range committed {
			got, ok := rendered[name]
			switch {
			case !ok:
				t.Errorf("%s/%s: committed, but the templates render no such file", tn.Database, name)
			case strings.HasPrefix(name, "0001_"):
				if diff := cmp.Diff(grants.FindAllString(want, -1), grants.FindAllString(got, -1)); diff != "" {
					t.Errorf("%s/%s: grants differ (-committed +rendered):\n%s", tn.Database, name, diff)
				}
			default:
				if diff := cmp.Diff(want, got); diff != "" {
					t.Errorf("%s/%s differs from its template (-committed +rendered):\n%s", tn.Database, name, diff)
				}
			}
		}
		for name := range rendered {
			if _, ok := committed[name]; !ok {
				t.Errorf("%s/%s: rendered, but not committed", tn.Database, name)
			}
		}
	}
}

// TestRowsTemplateMatchesReferenceTenants: the rows the template writes, rendered for bank-a
// (retail half) and bank-b (payments half), declare the same routes as the rows written by
// hand for them (every field but the demo users in Calls), so a route added to the suite
// for the reference tenants and not to the template fails here, not in a three-tenant run.
func TestRowsTemplateMatchesReferenceTenants(t *testing.T) {
	root := repoRoot(t)
	tmpl, err := template.New("rows").Parse(e2eRowsTemplate)
	if err != nil {
		t.Fatal(err)
	}
	topo := topology.Default()
	for _, tenant := range []string{"bank-a", "bank-b"} {
		data := rowsData(topo, tenant)
		for _, tb := range e2eTables[1:] {
			src, err := os.ReadFile(filepath.Join(root, tb.file))
			if err != nil {
				t.Fatal(err)
			}
			var rendered strings.Builder
			if err := tmpl.ExecuteTemplate(&rendered, tb.tmpl, data); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(routeDecls(string(src), tenant), routeDecls(rendered.String(), tenant)); diff != "" {
				t.Errorf("%s: %s's rows and the template's differ (-hand-written +template):\n%s", tb.file, tenant, diff)
			}
		}
	}
}

// routeDecls lists the route declarations of tenant in Go source: each row's text up to its
// Calls (the demo users differ by design), and each diagnostics(...) line.
func routeDecls(src, tenant string) []string {
	var out []string
	for _, l := range strings.Split(src, "\n") {
		l = strings.TrimSpace(l)
		if !strings.HasPrefix(l, `{Tenant: "`+tenant+`"`) && !strings.HasPrefix(l, `{Workload: "`+tenant+`/`) &&
			!strings.HasPrefix(l, `diagnostics("`+tenant+`/`) {
			continue
		}
		if i := strings.Index(l, ", Calls:"); i >= 0 {
			l = l[:i]
		}
		out = append(out, l)
	}
	return out
}
