package deployfiles

import (
	"encoding/json"
	"go/ast"
	"go/token"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// ClusterTargetLabels are the labels a Prometheus Operator ServiceMonitor scrape attaches to
// every series (namespace, service, job = the Service name, pod, container, endpoint,
// instance), the ones Prometheus itself adds or computes (__name__, le of a histogram's
// buckets), and nothing else. The local scrape sets the same target labels (ADR 0975).
var ClusterTargetLabels = []string{"namespace", "service", "job", "pod", "container", "endpoint", "instance"}

// exportedLabels reads the non-test Go code of libs and services and returns, per ztbank_*
// metric, the label names the service itself puts on it: the label slice of
// prometheus.New{Counter,Gauge,Histogram,Summary}Vec, none for the plain constructors, and the
// variable and constant labels of prometheus.NewDesc. A NewDesc whose name is not a constant
// (a table of metrics built in a loop, as in libs/dbcred) gives its labels to every ztbank_*
// name in that file that no constructor claimed.
func exportedLabels(t *testing.T) map[string][]string {
	t.Helper()
	files := serviceCode(t)
	consts := map[string]string{} // identifier (bare and pkg-qualified) -> string value
	for _, f := range files {
		for _, decl := range f.Decls {
			gd, ok := decl.(*ast.GenDecl)
			if !ok || gd.Tok != token.CONST {
				continue
			}
			for _, spec := range gd.Specs {
				vs := spec.(*ast.ValueSpec)
				for i, n := range vs.Names {
					if i < len(vs.Values) {
						if lit, ok := vs.Values[i].(*ast.BasicLit); ok && lit.Kind == token.STRING {
							v, _ := strconv.Unquote(lit.Value)
							consts[n.Name] = v
							consts[f.Name.Name+"."+n.Name] = v
						}
					}
				}
			}
		}
	}
	str := func(e ast.Expr) (string, bool) {
		switch x := e.(type) {
		case *ast.BasicLit:
			if x.Kind == token.STRING {
				s, err := strconv.Unquote(x.Value)
				return s, err == nil
			}
		case *ast.Ident:
			v, ok := consts[x.Name]
			return v, ok
		case *ast.SelectorExpr:
			if pkg, ok := x.X.(*ast.Ident); ok {
				v, ok := consts[pkg.Name+"."+x.Sel.Name]
				return v, ok
			}
		}
		return "", false
	}
	strs := func(e ast.Expr) []string {
		var out []string
		if cl, ok := e.(*ast.CompositeLit); ok {
			for _, el := range cl.Elts {
				if kv, ok := el.(*ast.KeyValueExpr); ok {
					el = kv.Key // prometheus.Labels{"role": role}: the key is the label
				}
				if s, ok := str(el); ok {
					out = append(out, s)
				}
			}
		}
		return out
	}
	optsName := func(e ast.Expr) (string, bool) {
		cl, ok := e.(*ast.CompositeLit)
		if !ok {
			return "", false
		}
		for _, el := range cl.Elts {
			if kv, ok := el.(*ast.KeyValueExpr); ok {
				if k, ok := kv.Key.(*ast.Ident); ok && k.Name == "Name" {
					return str(kv.Value)
				}
			}
		}
		return "", false
	}
	out := map[string][]string{}
	isName := regexp.MustCompile(`^ztbank_[a-z0-9_]+$`)
	for _, f := range files {
		var unnamed [][]string // labels of NewDesc calls whose name is not a constant
		ast.Inspect(f, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok {
				return true
			}
			sel, ok := call.Fun.(*ast.SelectorExpr)
			if !ok {
				return true
			}
			if pkg, ok := sel.X.(*ast.Ident); !ok || pkg.Name != "prometheus" {
				return true
			}
			switch fn := sel.Sel.Name; {
			case strings.HasSuffix(fn, "Vec") && len(call.Args) == 2:
				if name, ok := optsName(call.Args[0]); ok {
					out[name] = append(out[name], strs(call.Args[1])...)
				}
			case fn == "NewCounter" || fn == "NewGauge" || fn == "NewHistogram" || fn == "NewSummary":
				if name, ok := optsName(call.Args[0]); ok {
					out[name] = append(out[name], []string{}...)
				}
			case fn == "NewDesc" && len(call.Args) == 4:
				labels := append(strs(call.Args[2]), strs(call.Args[3])...)
				if name, ok := str(call.Args[0]); ok {
					out[name] = append(out[name], labels...)
				} else {
					unnamed = append(unnamed, labels)
				}
			}
			return true
		})
		if len(unnamed) == 0 {
			continue
		}
		ast.Inspect(f, func(n ast.Node) bool {
			if lit, ok := n.(*ast.BasicLit); ok && lit.Kind == token.STRING {
				if s, err := strconv.Unquote(lit.Value); err == nil && isName.MatchString(s) {
					if _, claimed := out[s]; !claimed {
						for _, l := range unnamed {
							out[s] = append(out[s], l...)
						}
					}
				}
			}
			return true
		})
	}
	for k, v := range out {
		sort.Strings(v)
		out[k] = slicesCompact(v)
	}
	return out
}

func slicesCompact(v []string) []string {
	var out []string
	for i, s := range v {
		if i == 0 || s != v[i-1] {
			out = append(out, s)
		}
	}
	if out == nil {
		out = []string{}
	}
	return out
}

// scrapedLabels is what a series of metric carries after a cluster scrape: the target labels,
// the metric's own labels, and exported_<l> for an own label l that a target label shadows
// (honor_labels is off, so the target's value wins and the service's moves aside).
func scrapedLabels(own []string) map[string]bool {
	m := map[string]bool{"__name__": true}
	for _, l := range ClusterTargetLabels {
		m[l] = true
	}
	for _, l := range own {
		if m[l] {
			m["exported_"+l] = true
			continue
		}
		m[l] = true
	}
	return m
}

var (
	// Label names in PromQL: grouping clauses, matchers, label_values() and templates.
	groupingRe = regexp.MustCompile(`\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)`)
	matcherRe  = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)\s*"`)
	labelValRe = regexp.MustCompile(`label_values\([^,()]*(?:\{[^}]*\})?\s*,\s*([a-zA-Z_][a-zA-Z0-9_]*)\)`)
	legendRe   = regexp.MustCompile(`\{\{\s*\$?(?:labels\.)?\$?labels\.([a-zA-Z_][a-zA-Z0-9_]*)\s*\}\}|\{\{\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\}\}`)
)

// labelRefs returns every label name an expression (or legend/annotation template) names.
func labelRefs(s string) []string {
	var out []string
	for _, m := range groupingRe.FindAllStringSubmatch(s, -1) {
		for _, l := range strings.Split(m[1], ",") {
			if l = strings.TrimSpace(l); l != "" {
				out = append(out, l)
			}
		}
	}
	// Matchers only inside {...}: the "=" of a comparison outside braces is not a label.
	for _, sel := range regexp.MustCompile(`\{[^{}]*\}`).FindAllString(s, -1) {
		for _, m := range matcherRe.FindAllStringSubmatch(sel, -1) {
			out = append(out, m[1])
		}
	}
	for _, m := range labelValRe.FindAllStringSubmatch(s, -1) {
		out = append(out, m[1])
	}
	for _, m := range legendRe.FindAllStringSubmatch(s, -1) {
		if m[1] != "" {
			out = append(out, m[1])
		} else if m[2] != "" {
			out = append(out, m[2])
		}
	}
	return out
}

// unknownLabels returns, for a query text that uses metrics, the label names it refers to
// that no referenced metric carries in a cluster scrape. Templates ({{ $labels.x }},
// {{x}}) are checked against the same set.
func unknownLabels(exported map[string][]string, query string, templates ...string) []string {
	allowed := map[string]bool{}
	for _, m := range referenced(query) {
		own, ok := exported[m]
		if !ok {
			continue // reported by the metric-name check
		}
		for l := range scrapedLabels(own) {
			allowed[l] = true
		}
		if strings.HasSuffix(m, "_seconds") {
			allowed["le"] = true // a histogram's buckets
		}
	}
	var bad []string
	for _, l := range labelRefs(query + "\n" + strings.Join(templates, "\n")) {
		if l == "value" || l == "__name__" { // $value in an annotation; the metric name
			continue
		}
		if !allowed[l] {
			bad = append(bad, l)
		}
	}
	if len(bad) == 0 {
		return nil
	}
	sort.Strings(bad)
	return slicesCompact(bad)
}

// TestExportedLabelsRead pins what exportedLabels finds for the platform metrics, so a
// parser that silently stopped seeing labels cannot make the checks below pass vacuously.
func TestExportedLabelsRead(t *testing.T) {
	got := exportedLabels(t)
	want := map[string][]string{
		"ztbank_http_requests_total":           {"method", "route", "status"},
		"ztbank_http_request_duration_seconds": {"method", "route"},
		"ztbank_authz_decisions_total":         {"reason", "result", "service"},
		"ztbank_mtls_handshake_failures_total": {"reason"},
		"ztbank_svid_expiry_seconds":           {"spiffe_id"},
		"ztbank_workloadapi_disconnects_total": {},
		"ztbank_db_credential_refreshes_total": {"role"},
		"ztbank_db_credential_failures_total":  {"role"},
		"ztbank_db_pool_acquired_conns":        {"role"},
		"ztbank_db_pool_max_conns":             {"role"},
		"ztbank_route_info":                    {"method", "route"},
	}
	sub := map[string][]string{}
	for k := range want {
		sub[k] = got[k]
	}
	if diff := cmp.Diff(want, sub); diff != "" {
		t.Errorf("labels read from the Go code (-want +got):\n%s", diff)
	}
}

// TestUnknownLabelsCatches keeps the check honest: the labels the old dashboards used (only
// the local scrape config added them) and a label the authz counter loses to the target's
// "service" must be reported; the cluster labels must not.
func TestUnknownLabelsCatches(t *testing.T) {
	exported := exportedLabels(t)
	tests := []struct {
		query, template string
		want            []string
	}{
		{`sum by (workload) (rate(ztbank_http_requests_total{workload=~"$workload"}[5m]))`, "{{workload}}", []string{"workload"}},
		{`label_values(ztbank_authz_decisions_total, tenant)`, "", []string{"tenant"}},
		{`sum by (namespace, job, le) (rate(ztbank_http_request_duration_seconds_bucket{namespace=~"$namespace"}[5m]))`, "{{namespace}}/{{job}}", nil},
		{`sum by (exported_service, result) (rate(ztbank_authz_decisions_total[5m]))`, "", nil},
		{`sum by (spiffe_id) (ztbank_http_requests_total)`, "", []string{"spiffe_id"}},
		{`ztbank_svid_expiry_seconds < 600`, "SVID of {{ $labels.workload }}", []string{"workload"}},
		{`sum by (role) (ztbank_workloadapi_disconnects_total)`, "", []string{"role"}},
	}
	for _, tc := range tests {
		if diff := cmp.Diff(tc.want, unknownLabels(exported, tc.query, tc.template)); diff != "" {
			t.Errorf("%s: unknown labels (-want +got):\n%s", tc.query, diff)
		}
	}
}

// TestDashboardsAndRulesUseClusterLabels: every label a dashboard query, variable, legend or
// an alert expression or annotation names is one the services export on that metric or one
// a cluster scrape adds.
func TestDashboardsAndRulesUseClusterLabels(t *testing.T) {
	exported := exportedLabels(t)
	for _, f := range dashboardFiles(t) {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var d dashboard
		if err := json.Unmarshal(b, &d); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		for _, v := range d.Templating.List {
			if v.Type != "query" {
				continue
			}
			var q struct {
				Query string `json:"query"`
			}
			if err := json.Unmarshal(v.Query, &q); err != nil {
				t.Errorf("%s: variable %s: %v", f, v.Name, err)
				continue
			}
			if bad := unknownLabels(exported, q.Query); len(bad) > 0 {
				t.Errorf("%s: variable %s uses labels %v that a cluster scrape does not give %s", filepath.Base(f), v.Name, bad, q.Query)
			}
		}
		for _, p := range d.Panels {
			for _, tg := range p.Targets {
				if bad := unknownLabels(exported, tg.Expr, tg.LegendFormat); len(bad) > 0 {
					t.Errorf("%s: panel %q uses labels %v that a cluster scrape does not give: %s", filepath.Base(f), p.Title, bad, tg.Expr)
				}
			}
		}
	}
	rules := alertRules(t)
	for _, r := range rules {
		var tmpl []string
		for _, a := range r.Annotations {
			tmpl = append(tmpl, a)
		}
		if bad := unknownLabels(exported, r.Expr, tmpl...); len(bad) > 0 {
			t.Errorf("alert %s uses labels %v that a cluster scrape does not give", r.Alert, bad)
		}
	}
	if len(rules) == 0 {
		t.Fatal("alerts.yml has no rules")
	}
}
