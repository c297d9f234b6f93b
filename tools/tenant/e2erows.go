package main

import (
	_ "embed"
	"fmt"
	"go/format"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"text/template"

	"github.com/ztbank/ztbank/libs/topology"
)

// The isolation suite's expectations are hand-written tables (tests/e2e: workloadCalls in
// rules.go, Routes in routes.go, ServiceRoutes in served.go), kept independent of the
// topology so a wrong topology cannot agree with itself. A new tenant's rows are appended
// to them as literal rows, between marker comments, the way a person would write them; the
// suite's own cross-checks (TestWorkloadCallsMatchTopology, the route coverage of
// TestIsolation) then hold them against the topology and the running services.

//go:embed e2erows.go.tmpl
var e2eRowsTemplate string

// The three tables and the line that opens and the one that closes each.
var e2eTables = []struct {
	file, tmpl, open, close string
}{
	{"tests/e2e/rules.go", "calls", "var workloadCalls = map[string][]string{\n", "\n}\n"},
	{"tests/e2e/routes.go", "routes", "var Routes = []Route{\n", "\n}\n"},
	{"tests/e2e/served.go", "served", "var ServiceRoutes = slices.Concat(\n", "\n)\n"},
}

func beginMarker(tenant string) string {
	return "// tenant " + tenant + ": rows written by make tenant NEW=" + tenant + "; make tenant REMOVE=" + tenant + " deletes them"
}

func endMarker(tenant string) string { return "// tenant " + tenant + ": end of rows" }

type rowsWorkload struct {
	Name  string
	Calls []string
}

// rowsTemplateData is what the rows template needs for one tenant.
type rowsTemplateData struct {
	T, Begin, End    string
	Retail, Payments bool
	Workloads        []rowsWorkload
}

func rowsData(topo *topology.Topology, tenant string) rowsTemplateData {
	data := rowsTemplateData{T: tenant, Begin: beginMarker(tenant), End: endMarker(tenant)}
	runs := func(s string) bool { _, ok := topo.TenantWorkload(tenant, s); return ok }
	data.Retail, data.Payments = runs("user") && runs("account"), runs("payment") && runs("ledger")
	for _, w := range topo.Workloads {
		if w.Tenant == tenant {
			data.Workloads = append(data.Workloads, rowsWorkload{Name: w.Name, Calls: w.Calls})
		}
	}
	return data
}

// addE2ERows plans the edits that append tenant's rows to each table and add its
// workloads to the rows of the workloads that call them (the edge and the ingress).
func addE2ERows(root string, topo *topology.Topology, tenant string) ([]fileChange, error) {
	data := rowsData(topo, tenant)
	tmpl, err := template.New("rows").Parse(e2eRowsTemplate)
	if err != nil {
		return nil, err
	}
	var plan []fileChange
	for _, tb := range e2eTables {
		src, err := os.ReadFile(filepath.Join(root, tb.file))
		if err != nil {
			return nil, err
		}
		s := string(src)
		if strings.Contains(s, beginMarker(tenant)) {
			return nil, fmt.Errorf("%s already holds rows of tenant %s", tb.file, tenant)
		}
		at, err := tableEnd(s, tb.file, tb.open, tb.close)
		if err != nil {
			return nil, err
		}
		var rows strings.Builder
		if err := tmpl.ExecuteTemplate(&rows, tb.tmpl, data); err != nil {
			return nil, err
		}
		block := "\n" + strings.TrimRight(rows.String(), "\n")
		s = s[:at] + block + s[at:]
		if tb.tmpl == "calls" {
			if s, err = addCallers(s, topo, tenant); err != nil {
				return nil, err
			}
		}
		out, err := format.Source([]byte(s))
		if err != nil {
			return nil, fmt.Errorf("%s with %s's rows: %w", tb.file, tenant, err)
		}
		plan = append(plan, fileChange{path: tb.file, data: out})
	}
	return plan, nil
}

// tableEnd is the offset of the newline before the line that closes the table.
func tableEnd(s, file, open, close string) (int, error) {
	i := strings.Index(s, open)
	if i < 0 {
		return 0, fmt.Errorf("%s: %q not found", file, strings.TrimSpace(open))
	}
	j := strings.Index(s[i:], close)
	if j < 0 {
		return 0, fmt.Errorf("%s: end of %q not found", file, strings.TrimSpace(open))
	}
	return i + j, nil
}

// addCallers adds tenant's workloads to the workloadCalls rows of the other workloads the
// topology lets call them.
func addCallers(s string, topo *topology.Topology, tenant string) (string, error) {
	for _, w := range topo.Workloads {
		if w.Tenant == tenant {
			continue
		}
		var add []string
		for _, c := range w.Calls {
			if strings.HasPrefix(c, tenant+"/") {
				add = append(add, `"`+c+`"`)
			}
		}
		if len(add) == 0 {
			continue
		}
		key := "\t\"" + w.Name + "\":"
		i := strings.Index(s, key)
		if i < 0 {
			return "", fmt.Errorf("tests/e2e/rules.go: workloadCalls has no row for %s", w.Name)
		}
		eol := i + strings.IndexByte(s[i:], '\n')
		row := s[i:eol]
		value := strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(row[len(key):]), ","))
		items := listItems(value)
		if items == nil && value != "nil" && value != "{}" {
			return "", fmt.Errorf("tests/e2e/rules.go: workloadCalls row %q is not a one-line list", row)
		}
		items = append(items, add...)
		s = s[:i] + key + " {" + strings.Join(items, ", ") + "}," + s[eol:]
	}
	return s, nil
}

// listItems splits a one-line `{"a", "b"}` into its quoted items, nil if value is not one.
func listItems(value string) []string {
	if !strings.HasPrefix(value, "{") || !strings.HasSuffix(value, "}") || len(value) < 3 {
		return nil
	}
	items := strings.Split(value[1:len(value)-1], ",")
	for i := range items {
		items[i] = strings.TrimSpace(items[i])
	}
	return items
}

// removeE2ERows plans the edits that delete tenant's marked rows from each table and its
// workloads from the other rows. A tenant without marked rows was not added by this
// command, and the removal is refused.
func removeE2ERows(root, tenant string) ([]fileChange, error) {
	var plan []fileChange
	for _, tb := range e2eTables {
		src, err := os.ReadFile(filepath.Join(root, tb.file))
		if err != nil {
			return nil, err
		}
		lines := strings.SplitAfter(string(src), "\n")
		begin := slices.IndexFunc(lines, func(l string) bool { return strings.TrimSpace(l) == beginMarker(tenant) })
		end := slices.IndexFunc(lines, func(l string) bool { return strings.TrimSpace(l) == endMarker(tenant) })
		if begin < 0 || end < begin {
			return nil, fmt.Errorf("%s holds no rows written by make tenant for %s: a tenant written by hand is removed by hand", tb.file, tenant)
		}
		if begin > 0 && strings.TrimSpace(lines[begin-1]) == "" {
			begin--
		}
		lines = slices.Delete(lines, begin, end+1)
		s := strings.Join(lines, "")
		if tb.tmpl == "calls" {
			s = removeCallers(s, tenant)
		}
		out, err := format.Source([]byte(s))
		if err != nil {
			return nil, fmt.Errorf("%s without %s's rows: %w", tb.file, tenant, err)
		}
		plan = append(plan, fileChange{path: tb.file, data: out})
	}
	return plan, nil
}

// callsRow is one one-line row of workloadCalls.
var callsRow = regexp.MustCompile(`^(\t"[^"]+":)\s*(\{.*\}),\n$`)

// removeCallers drops tenant's workloads from the one-line rows of workloadCalls.
func removeCallers(s, tenant string) string {
	lines := strings.SplitAfter(s, "\n")
	for i, l := range lines {
		m := callsRow.FindStringSubmatch(l)
		if m == nil || !strings.Contains(l, `"`+tenant+`/`) {
			continue
		}
		items := slices.DeleteFunc(listItems(m[2]), func(it string) bool { return strings.HasPrefix(it, `"`+tenant+`/`) })
		lines[i] = m[1] + " {" + strings.Join(items, ", ") + "},\n"
		if len(items) == 0 {
			lines[i] = m[1] + " nil,\n"
		}
	}
	return strings.Join(lines, "")
}
