// Package deployfiles checks the observability configuration under deploy/observability
// without starting anything: alert rules pass promtool, dashboards and rules name only
// metrics the Go code defines, and the Falco rules have the fields Falco requires.
package deployfiles

import (
	"encoding/json"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"go.yaml.in/yaml/v3"

	"github.com/ztbank/ztbank/devkit/localspire"
)

func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := localspire.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	return root
}

func obsDir(t *testing.T) string { return filepath.Join(repoRoot(t), "deploy", "observability") }

// promtool finds the binary or fails with what to install: a check that silently skips on
// a machine without it would pass without checking anything.
func promtool(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatal("promtool not found on PATH: install the Debian package `prometheus` (apt-get install -y --no-install-recommends prometheus), or run `make obs-tools`")
	}
	return p
}

func TestAlertRulesPassPromtool(t *testing.T) {
	bin := promtool(t)
	dir := filepath.Join(obsDir(t), "prometheus")
	for _, args := range [][]string{
		{"check", "rules", "alerts.yml"},
		{"test", "rules", "alerts_test.yml"},
		{"check", "config", "prometheus.yml"},
	} {
		cmd := exec.Command(bin, args...)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}

// serviceCode parses the non-test Go code of libs and services: the code that decides what
// the services export.
func serviceCode(t *testing.T) []*ast.File {
	t.Helper()
	var files []*ast.File
	root := repoRoot(t)
	for _, dir := range []string{"libs", "services"} {
		err := filepath.WalkDir(filepath.Join(root, dir), func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
				return err
			}
			f, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.SkipObjectResolution)
			if err != nil {
				return err
			}
			files = append(files, f)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return files
}

// definedMetrics returns every ztbank_* metric name that appears as a string literal in the
// non-test Go code of libs and services: what the services can export.
func definedMetrics(t *testing.T) map[string]bool {
	t.Helper()
	names := map[string]bool{}
	isName := regexp.MustCompile(`^ztbank_[a-z0-9_]+$`)
	for _, f := range serviceCode(t) {
		ast.Inspect(f, func(n ast.Node) bool {
			if lit, ok := n.(*ast.BasicLit); ok && lit.Kind == token.STRING {
				if s, err := strconv.Unquote(lit.Value); err == nil && isName.MatchString(s) {
					names[s] = true
				}
			}
			return true
		})
	}
	// The platform names the brief fixes must all be among them.
	for _, n := range []string{"ztbank_http_requests_total", "ztbank_http_request_duration_seconds",
		"ztbank_authz_decisions_total", "ztbank_mtls_handshake_failures_total", "ztbank_svid_expiry_seconds",
		"ztbank_workloadapi_disconnects_total", "ztbank_db_credential_refreshes_total",
		"ztbank_db_credential_failures_total", "ztbank_db_pool_acquired_conns"} {
		if !names[n] {
			t.Errorf("platform metric %s is not defined anywhere in libs or services", n)
		}
	}
	return names
}

var metricRef = regexp.MustCompile(`\bztbank_[a-z0-9_]+`)

// referenced returns the metric names in a PromQL expression, with histogram suffixes
// mapped back to the histogram's name.
func referenced(expr string) []string {
	var out []string
	for _, m := range metricRef.FindAllString(expr, -1) {
		for _, suf := range []string{"_bucket", "_sum", "_count"} {
			if strings.HasSuffix(m, "_seconds"+suf) {
				m = strings.TrimSuffix(m, suf)
			}
		}
		out = append(out, m)
	}
	return out
}

func checkReferences(t *testing.T, where string, exprs []string, defined map[string]bool) {
	t.Helper()
	if len(exprs) == 0 {
		t.Errorf("%s: no PromQL expressions found", where)
	}
	for _, e := range exprs {
		refs := referenced(e)
		if len(refs) == 0 {
			t.Errorf("%s: expression uses no ztbank metric: %s", where, e)
		}
		for _, r := range refs {
			if !defined[r] {
				t.Errorf("%s: %s is not a metric the services export (expression %s)", where, r, e)
			}
		}
	}
}

// dashboard is what the checks read of a Grafana dashboard: its queries, variables and legends.
type dashboard struct {
	UID        string `json:"uid"`
	Title      string `json:"title"`
	Templating struct {
		List []struct {
			Name  string          `json:"name"`
			Type  string          `json:"type"`
			Query json.RawMessage `json:"query"`
		} `json:"list"`
	} `json:"templating"`
	Panels []struct {
		Title   string `json:"title"`
		Targets []struct {
			Expr         string `json:"expr"`
			LegendFormat string `json:"legendFormat"`
		} `json:"targets"`
	} `json:"panels"`
}

// dashboardFiles lists the Grafana dashboards; finding none fails, so that a moved folder
// cannot pass the checks over nothing.
func dashboardFiles(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(obsDir(t), "grafana", "dashboards", "*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no dashboards found (%v)", err)
	}
	return files
}

func TestDashboardsUseExportedMetrics(t *testing.T) {
	defined := definedMetrics(t)
	var titles []string
	uids := map[string]string{}
	for _, f := range dashboardFiles(t) {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var d dashboard
		dec := json.NewDecoder(strings.NewReader(string(b)))
		if err := dec.Decode(&d); err != nil {
			t.Errorf("%s: %v", f, err)
			continue
		}
		if d.UID == "" || d.Title == "" || len(d.Panels) == 0 {
			t.Errorf("%s: want uid, title and panels", f)
		}
		if prev, dup := uids[d.UID]; dup {
			t.Errorf("%s and %s share uid %q", prev, f, d.UID)
		}
		uids[d.UID] = f
		titles = append(titles, d.Title)
		var exprs []string
		for _, p := range d.Panels {
			if len(p.Targets) == 0 {
				t.Errorf("%s: panel %q has no queries", f, p.Title)
			}
			for _, tg := range p.Targets {
				exprs = append(exprs, tg.Expr)
			}
		}
		for _, v := range d.Templating.List {
			if v.Type != "query" {
				continue
			}
			q, _ := json.Marshal(v.Query)
			exprs = append(exprs, string(q))
		}
		checkReferences(t, filepath.Base(f), exprs, defined)
	}
	sort.Strings(titles)
	want := []string{"ztbank / database credentials", "ztbank / services", "ztbank / zero trust"}
	if diff := cmp.Diff(want, titles); diff != "" {
		t.Errorf("dashboards mismatch (-want +got):\n%s", diff)
	}
}

// alertRule is one rule of deploy/observability/prometheus/alerts.yml.
type alertRule struct {
	Alert       string            `yaml:"alert"`
	Expr        string            `yaml:"expr"`
	Annotations map[string]string `yaml:"annotations"`
}

// alertRules reads every rule of alerts.yml, across its groups.
func alertRules(t *testing.T) []alertRule {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(obsDir(t), "prometheus", "alerts.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var file struct {
		Groups []struct {
			Rules []alertRule `yaml:"rules"`
		} `yaml:"groups"`
	}
	if err := yaml.Unmarshal(b, &file); err != nil {
		t.Fatal(err)
	}
	var rules []alertRule
	for _, g := range file.Groups {
		rules = append(rules, g.Rules...)
	}
	return rules
}

func TestAlertRulesUseExportedMetrics(t *testing.T) {
	defined := definedMetrics(t)
	var exprs, alerts []string
	for _, r := range alertRules(t) {
		exprs = append(exprs, r.Expr)
		alerts = append(alerts, r.Alert)
	}
	checkReferences(t, "alerts.yml", exprs, defined)
	// The alerts the issue asks for, by what they watch.
	for _, want := range []string{"ZtbankAuthzDenialSpike", "ZtbankMTLSHandshakeFailures", "ZtbankSVIDExpiringSoon", "ZtbankDBCredentialRefreshFailing"} {
		if !slices.Contains(alerts, want) {
			t.Errorf("alerts.yml has no %s", want)
		}
	}
}

// falcoItem is one element of a Falco rules file: a rule, macro, list or engine version.
type falcoItem map[string]any

func TestFalcoRulesWellFormed(t *testing.T) {
	for _, overlay := range []string{"kind", "eks"} {
		t.Run(overlay, func(t *testing.T) { testFalcoRules(t, overlay) })
	}
}

// testFalcoRules loads ztbank_rules.yaml with the overlay's generated outbound allowlist, the
// pair Falco is started with.
func testFalcoRules(t *testing.T, overlay string) {
	var items []falcoItem
	for _, f := range []string{"ztbank_rules.yaml", "outbound-" + overlay + ".yaml"} {
		b, err := os.ReadFile(filepath.Join(obsDir(t), "falco", f))
		if err != nil {
			t.Fatal(err)
		}
		var more []falcoItem
		if err := yaml.Unmarshal(b, &more); err != nil {
			t.Fatalf("%s is not a YAML list: %v", f, err)
		}
		items = append(items, more...)
	}
	priorities := []string{"EMERGENCY", "ALERT", "CRITICAL", "ERROR", "WARNING", "NOTICE", "INFORMATIONAL", "INFO", "DEBUG"}
	str := func(it falcoItem, k string) string { s, _ := it[k].(string); return strings.TrimSpace(s) }
	macros, lists := map[string]bool{}, map[string]bool{}
	var rules []falcoItem
	for i, it := range items {
		switch {
		case it["rule"] != nil:
			for _, k := range []string{"rule", "desc", "condition", "output", "priority"} {
				if str(it, k) == "" {
					t.Errorf("item %d (rule %q): missing or empty %s", i, str(it, "rule"), k)
				}
			}
			if p := strings.ToUpper(str(it, "priority")); !slices.Contains(priorities, p) {
				t.Errorf("rule %q: priority %q is not one of %v", str(it, "rule"), p, priorities)
			}
			rules = append(rules, it)
		case it["macro"] != nil:
			if str(it, "condition") == "" {
				t.Errorf("macro %q has no condition", str(it, "macro"))
			}
			macros[str(it, "macro")] = true
		case it["list"] != nil:
			if _, ok := it["items"].([]any); !ok {
				t.Errorf("list %q has no items sequence", str(it, "list"))
			}
			lists[str(it, "list")] = true
		case it["required_engine_version"] != nil:
		default:
			t.Errorf("item %d is neither rule, macro, list nor required_engine_version: %v", i, it)
		}
	}
	// Every ztbank_ name a condition uses must be a macro or list defined here, so the file
	// stands alone.
	ref := regexp.MustCompile(`\bztbank_[a-z_]+\b`)
	for _, it := range append(rules, items...) {
		for _, m := range ref.FindAllString(str(it, "condition"), -1) {
			if !macros[m] && !lists[m] {
				t.Errorf("condition of %v uses undefined macro or list %s", it["rule"], m)
			}
		}
	}
	var names []string
	for _, r := range rules {
		names = append(names, str(r, "rule"))
	}
	want := []string{
		"ztbank shell in a bank pod",
		"ztbank SPIRE socket used by unexpected binary",
		"ztbank write under read-only path",
		"ztbank outbound connection outside the topology",
	}
	if diff := cmp.Diff(want, names); diff != "" {
		t.Errorf("Falco rules mismatch (-want +got):\n%s", diff)
	}
}

func TestLokiAndJaegerConfigsParse(t *testing.T) {
	for _, f := range []string{"loki/config.yaml", "jaeger/config.yaml"} {
		b, err := os.ReadFile(filepath.Join(obsDir(t), f))
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		if err := yaml.Unmarshal(b, &m); err != nil {
			t.Errorf("%s: %v", f, err)
		}
		if len(m) == 0 {
			t.Errorf("%s is empty", f)
		}
	}
}
