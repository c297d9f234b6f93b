package diagram

import (
	"bytes"
	"encoding/xml"
	"flag"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/ztbank/ztbank/libs/topology"
)

var update = flag.Bool("update", false, "rewrite docs/topology.svg from topology.yaml (make topology-svg)")

// committed is the README's picture, relative to this package.
var committed = filepath.Join("..", "..", "..", "docs", "topology.svg")

// TestCommittedSVGIsCurrent keeps docs/topology.svg equal to what topology.yaml draws, so
// an edited topology without `make topology-svg` fails here instead of leaving the README
// showing a platform that no longer exists.
func TestCommittedSVGIsCurrent(t *testing.T) {
	want := SVG(topology.Default())
	if *update {
		if err := os.WriteFile(committed, want, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("wrote %s", committed)
		return
	}
	got, err := os.ReadFile(committed)
	if err != nil {
		t.Fatalf("%v (run `make topology-svg`)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s is stale: run `make topology-svg`; diff (-want +got):\n%s", committed, cmp.Diff(string(want), string(got)))
	}
}

// drawn is what a reader of the SVG can find: workloads with their IDs, calls, boxes, and
// the rectangle of every workload (to check nothing overlaps).
type drawn struct {
	Workloads map[string]string // name -> SPIFFE ID
	Calls     [][2]string
	Boxes     []string
	rects     map[string][4]float64
}

// parse reads the SVG with encoding/xml, as any consumer would, and fails on bad XML.
func parse(t *testing.T, svg []byte) drawn {
	t.Helper()
	d := drawn{Workloads: map[string]string{}, rects: map[string][4]float64{}}
	dec := xml.NewDecoder(bytes.NewReader(svg))
	var current string
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("SVG is not well-formed XML: %v", err)
		}
		se, ok := tok.(xml.StartElement)
		if !ok {
			continue
		}
		attr := func(name string) string {
			for _, a := range se.Attr {
				if a.Name.Local == name {
					return a.Value
				}
			}
			return ""
		}
		switch {
		case se.Name.Local == "g" && strings.Contains(attr("class"), "workload"):
			current = attr("data-workload")
			d.Workloads[current] = attr("data-spiffe-id")
		case se.Name.Local == "g" && attr("class") == "call":
			d.Calls = append(d.Calls, [2]string{attr("data-from"), attr("data-to")})
		case se.Name.Local == "g" && (attr("class") == "tenant" || attr("class") == "platform"):
			d.Boxes = append(d.Boxes, attr("class")+" "+attr("data-name"))
		case se.Name.Local == "rect" && current != "":
			var r [4]float64
			for i, k := range []string{"x", "y", "width", "height"} {
				f, err := strconv.ParseFloat(attr(k), 64)
				if err != nil {
					t.Fatalf("workload %s: rect %s=%q: %v", current, k, attr(k), err)
				}
				r[i] = f
			}
			d.rects[current] = r
			current = ""
		}
	}
	return d
}

// threeTenants adds a third tenant that runs all five services, so the layout is checked on
// a topology with a wider call graph than the committed one.
const threeTenants = `trust_domain: example.org
platform_namespace: platform
tenants:
  - {name: t1, database: t1}
  - {name: t2, database: t2}
  - {name: t3, database: t3}
workloads:
  - {name: edge, service: edge, platform: true, public: "127.0.0.1:8443", listen: "127.0.0.1:8500", health: "127.0.0.1:9400", calls: [t1/gateway, t2/gateway, t3/gateway]}
  - {name: t1/gateway, tenant: t1, service: gateway, listen: "127.0.0.1:8501", health: "127.0.0.1:9401", calls: [t1/user, t1/account]}
  - {name: t1/user, tenant: t1, service: user, listen: "127.0.0.1:8502", health: "127.0.0.1:9402", database_role: user_svc, calls: [t1/account]}
  - {name: t1/account, tenant: t1, service: account, listen: "127.0.0.1:8503", health: "127.0.0.1:9403", database_role: account_svc}
  - {name: t2/gateway, tenant: t2, service: gateway, listen: "127.0.0.1:8601", health: "127.0.0.1:9411", calls: [t2/payment, t2/ledger]}
  - {name: t2/payment, tenant: t2, service: payment, listen: "127.0.0.1:8602", health: "127.0.0.1:9412", database_role: payment_svc, calls: [t2/ledger]}
  - {name: t2/ledger, tenant: t2, service: ledger, listen: "127.0.0.1:8603", health: "127.0.0.1:9413", database_role: ledger_svc}
  - {name: t3/gateway, tenant: t3, service: gateway, listen: "127.0.0.1:8701", health: "127.0.0.1:9421", calls: [t3/user, t3/account, t3/payment, t3/ledger]}
  - {name: t3/user, tenant: t3, service: user, listen: "127.0.0.1:8702", health: "127.0.0.1:9422", database_role: user_svc, calls: [t3/account]}
  - {name: t3/account, tenant: t3, service: account, listen: "127.0.0.1:8703", health: "127.0.0.1:9423", database_role: account_svc}
  - {name: t3/payment, tenant: t3, service: payment, listen: "127.0.0.1:8704", health: "127.0.0.1:9424", database_role: payment_svc, calls: [t3/ledger]}
  - {name: t3/ledger, tenant: t3, service: ledger, listen: "127.0.0.1:8705", health: "127.0.0.1:9425", database_role: ledger_svc}
`

// TestEveryWorkloadAndCallIsDrawn checks, for the committed topology and a larger one, that
// each workload appears once with its SPIFFE ID, each allowed call once as an arrow and
// nothing else, each tenant and the platform as a box, and that no two workloads overlap.
func TestEveryWorkloadAndCallIsDrawn(t *testing.T) {
	big, err := topology.Parse("three.yaml", []byte(threeTenants))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		topo *topology.Topology
	}{
		{"committed topology", topology.Default()},
		{"three tenants", big},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := parse(t, SVG(tc.topo))
			wantW := map[string]string{}
			for _, w := range tc.topo.Workloads {
				wantW[w.Name] = w.ID.String()
			}
			if diff := cmp.Diff(wantW, d.Workloads); diff != "" {
				t.Errorf("workloads mismatch (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.topo.Edges(), d.Calls); diff != "" {
				t.Errorf("calls mismatch (-want +got):\n%s", diff)
			}
			wantBoxes := []string{"platform " + tc.topo.PlatformNamespace}
			for _, tn := range tc.topo.Tenants {
				wantBoxes = append(wantBoxes, "tenant "+tn.Name)
			}
			if diff := cmp.Diff(wantBoxes, d.Boxes); diff != "" {
				t.Errorf("boxes mismatch (-want +got):\n%s", diff)
			}
			names := make([]string, 0, len(d.rects))
			for n := range d.rects {
				names = append(names, n)
			}
			slices.Sort(names)
			for i, a := range names {
				for _, b := range names[i+1:] {
					if overlap(d.rects[a], d.rects[b]) {
						t.Errorf("workloads %s %v and %s %v overlap", a, d.rects[a], b, d.rects[b])
					}
				}
			}
		})
	}
}

// TestCallsPointDown checks that within a tenant every arrow goes from a higher row to a
// lower one: the layering follows the call graph, so the picture reads top to bottom.
func TestCallsPointDown(t *testing.T) {
	topo := topology.Default()
	d := parse(t, SVG(topo))
	for _, e := range topo.Edges() {
		from, _ := topo.Workload(e[0])
		to, _ := topo.Workload(e[1])
		if from.Tenant == "" || from.Tenant != to.Tenant {
			continue
		}
		if d.rects[e[0]][1] >= d.rects[e[1]][1] {
			t.Errorf("%s (y=%v) calls %s (y=%v): the callee is not below the caller", e[0], d.rects[e[0]][1], e[1], d.rects[e[1]][1])
		}
	}
}

// TestNamesAreEscaped checks the escaping every name and ID goes through: the loader refuses
// markup in names today, but the drawing must stay well-formed if a field ever allows it.
func TestNamesAreEscaped(t *testing.T) {
	if got := esc(`a<b&"c"`); got != "a&lt;b&amp;&#34;c&#34;" {
		t.Errorf("esc() = %q", got)
	}
}

func overlap(a, b [4]float64) bool {
	return a[0] < b[0]+b[2] && b[0] < a[0]+a[2] && a[1] < b[1]+b[3] && b[1] < a[1]+a[3]
}
