package topology

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// TestTwoTenantFixture pins exact callers and edges for a fixed two-tenant file; the
// committed topology changes with make tenant, so TestDefaultTopology checks its shape.
func TestTwoTenantFixture(t *testing.T) {
	topo, err := Load("testdata/two-tenants.yaml")
	if err != nil {
		t.Fatal(err)
	}
	got := map[string][]string{}
	for _, w := range topo.Workloads {
		for _, id := range topo.AllowedCallers(w.Name) {
			got[w.Name] = append(got[w.Name], id.String())
		}
	}
	want := map[string][]string{
		"bank-a/gateway": {"spiffe://ztbank.local/ns/ztbank-system/sa/edge", "spiffe://ztbank.local/ns/ztbank-system/sa/emissary-ingress"},
		"bank-b/gateway": {"spiffe://ztbank.local/ns/ztbank-system/sa/edge", "spiffe://ztbank.local/ns/ztbank-system/sa/emissary-ingress"},
		"bank-a/user":    {"spiffe://ztbank.local/ns/bank-a/sa/gateway"},
		"bank-a/account": {"spiffe://ztbank.local/ns/bank-a/sa/gateway", "spiffe://ztbank.local/ns/bank-a/sa/user"},
		"bank-b/payment": {"spiffe://ztbank.local/ns/bank-b/sa/gateway"},
		"edge":           {"spiffe://ztbank.local/ns/ztbank-system/sa/emissary-ingress"},
		"bank-b/ledger":  {"spiffe://ztbank.local/ns/bank-b/sa/gateway", "spiffe://ztbank.local/ns/bank-b/sa/payment"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("AllowedCallers mismatch (-want +got):\n%s", diff)
	}
	if n := len(topo.Edges()); n != 11 {
		t.Errorf("Edges() = %d edges, want 11", n)
	}
	edge, _ := topo.Workload("edge")
	if edge.ID.String() != "spiffe://ztbank.local/ns/ztbank-system/sa/edge" || edge.Tenant != "" {
		t.Errorf("edge = %+v", edge)
	}
}

// TestDefaultTopology checks the committed topology, whatever tenants it has, for what every
// tree must hold: Edges and AllowedCallers agree, no call crosses tenants, each tenant is
// entered only through its gateway by the edge and the ingress, and the edge's only caller
// is the ingress.
func TestDefaultTopology(t *testing.T) {
	topo := Default()
	if len(topo.Tenants) == 0 {
		t.Fatal("no tenants")
	}
	fromEdges := map[string][]string{}
	for _, e := range topo.Edges() {
		from, ok := topo.Workload(e[0])
		if !ok {
			t.Fatalf("edge from unknown workload %q", e[0])
		}
		to, ok := topo.Workload(e[1])
		if !ok {
			t.Fatalf("edge to unknown workload %q", e[1])
		}
		if from.Tenant != "" && from.Tenant != to.Tenant {
			t.Errorf("%s may call %s in another tenant", from.Name, to.Name)
		}
		if from.Tenant == "" && to.Tenant != "" && to.Service != EntryService {
			t.Errorf("platform workload %s may call %s, not its tenant's %s", from.Name, to.Name, EntryService)
		}
		fromEdges[to.Name] = append(fromEdges[to.Name], from.ID.String())
	}
	fromCallers := map[string][]string{}
	for _, w := range topo.Workloads {
		for _, id := range topo.AllowedCallers(w.Name) {
			fromCallers[w.Name] = append(fromCallers[w.Name], id.String())
		}
	}
	sorted := cmpopts.SortSlices(func(a, b string) bool { return a < b })
	if diff := cmp.Diff(fromEdges, fromCallers, sorted); diff != "" {
		t.Errorf("Edges and AllowedCallers disagree (-edges +callers):\n%s", diff)
	}
	platform := func(service string) string {
		return "spiffe://" + topo.TrustDomain.Name() + "/ns/" + topo.PlatformNamespace + "/sa/" + service
	}
	for _, tn := range topo.Tenants {
		gw, ok := topo.TenantWorkload(tn.Name, EntryService)
		if !ok {
			t.Errorf("tenant %s has no %s", tn.Name, EntryService)
			continue
		}
		want := []string{platform("edge"), platform("emissary-ingress")}
		if diff := cmp.Diff(want, fromCallers[gw.Name], sorted); diff != "" {
			t.Errorf("%s callers (-want +got):\n%s", gw.Name, diff)
		}
	}
	if diff := cmp.Diff([]string{platform("emissary-ingress")}, fromCallers["edge"]); diff != "" {
		t.Errorf("edge callers (-want +got):\n%s", diff)
	}
}

// good is a minimal valid topology: one tenant running the payments half of the catalogue.
const good = `trust_domain: example.org
platform_namespace: platform
tenants:
  - name: t1
    database: t1_db
workloads:
  - name: t1/gateway
    tenant: t1
    service: gateway
    listen: 127.0.0.1:1
    health: 127.0.0.1:2
    calls: [t1/payment, t1/ledger]
  - name: t1/payment
    tenant: t1
    service: payment
    listen: 127.0.0.1:3
    health: 127.0.0.1:4
    calls: [t1/ledger]
  - name: t1/ledger
    tenant: t1
    service: ledger
    listen: 127.0.0.1:5
    health: 127.0.0.1:6
`

// Blocks of good, cut out or added by the catalogue cases below.
const (
	gatewayBlock = "  - name: t1/gateway\n    tenant: t1\n    service: gateway\n    listen: 127.0.0.1:1\n    health: 127.0.0.1:2\n    calls: [t1/payment, t1/ledger]\n"
	paymentBlock = "  - name: t1/payment\n    tenant: t1\n    service: payment\n    listen: 127.0.0.1:3\n    health: 127.0.0.1:4\n    calls: [t1/ledger]\n"
	ledgerBlock  = "  - name: t1/ledger\n    tenant: t1\n    service: ledger\n    listen: 127.0.0.1:5\n    health: 127.0.0.1:6\n"
)

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct {
		name  string
		edits [][2]string // old, new: each must apply
		want  string      // the whole one-line error
	}{
		{"unknown tenant", [][2]string{{"    tenant: t1\n    service: ledger", "    tenant: t9\n    service: ledger"}},
			"invalid topology: test.yaml:19: workload \"t1/ledger\": unknown tenant \"t9\""},
		{"misnamed workload", [][2]string{{"    tenant: t1\n    service: ledger", "    tenant: t1\n    service: payment"}},
			"invalid topology: test.yaml:19: workload \"t1/ledger\": must be named \"t1/payment\""},
		{"duplicate SPIFFE ID", [][2]string{{"  - name: t1/ledger\n    tenant: t1\n    service: ledger", "  - name: t1/payment\n    tenant: t1\n    service: payment"}},
			"invalid topology: test.yaml:19: duplicate SPIFFE ID spiffe://example.org/ns/t1/sa/payment (also workload \"t1/payment\" at line 13)"},
		{"call edge to a missing workload", [][2]string{{"    calls: [t1/ledger]\n", "    calls: [t1/vault]\n"}},
			"invalid topology: test.yaml:18: workload \"t1/payment\" calls missing workload \"t1/vault\""},
		{"unknown field", [][2]string{{"    health: 127.0.0.1:6", "    health: 127.0.0.1:6\n    colour: red"}},
			"invalid topology: test.yaml: line 24: unknown field \"colour\""},
		{"bad trust domain", [][2]string{{"example.org", "Example Org"}},
			"invalid topology: test.yaml:1: trust_domain \"Example Org\" is not a valid SPIFFE trust domain"},
		{"reused address", [][2]string{{"127.0.0.1:6", "127.0.0.1:1"}},
			"invalid topology: test.yaml:19: workload \"t1/ledger\": health address 127.0.0.1:1 already used by t1/gateway"},
		{"external workload with an address", [][2]string{{"    service: ledger\n", "    service: ledger\n    external: true\n"}},
			"invalid topology: test.yaml:19: workload \"t1/ledger\": an external workload has no local addresses or database"},
		{"self call", [][2]string{{"    calls: [t1/ledger]\n", "    calls: [t1/payment]\n"}},
			"invalid topology: test.yaml:18: workload \"t1/payment\" calls itself"},

		// The tenant catalogue: a tenant's chosen services must form a complete call graph.
		{"service outside the catalogue", [][2]string{{ledgerBlock, ledgerBlock + "  - name: t1/vault\n    tenant: t1\n    service: vault\n    listen: 127.0.0.1:7\n    health: 127.0.0.1:8\n"}},
			"invalid topology: test.yaml:24: workload \"t1/vault\": service \"vault\" is not in the tenant catalogue (gateway, user, account, payment, ledger)"},
		{"payment without ledger", [][2]string{{ledgerBlock, ""}, {"    calls: [t1/ledger]\n", ""}, {"[t1/payment, t1/ledger]", "[t1/payment]"}},
			"invalid topology: test.yaml:13: tenant \"t1\" runs payment but not ledger, which payment needs: add workload \"t1/ledger\""},
		{"ledger without payment", [][2]string{{paymentBlock, ""}, {"[t1/payment, t1/ledger]", "[t1/ledger]"}},
			"invalid topology: test.yaml:13: tenant \"t1\" runs ledger but not payment, which ledger needs: add workload \"t1/payment\""},
		{"user without account", [][2]string{{ledgerBlock, ledgerBlock + "  - name: t1/user\n    tenant: t1\n    service: user\n    listen: 127.0.0.1:7\n    health: 127.0.0.1:8\n"}},
			"invalid topology: test.yaml:24: tenant \"t1\" runs user but not account, which user needs: add workload \"t1/account\""},
		{"payment not allowed to call ledger", [][2]string{{"    calls: [t1/ledger]\n", ""}},
			"invalid topology: test.yaml:13: workload \"t1/payment\" must be allowed to call \"t1/ledger\": the catalogue's payment calls its tenant's ledger"},
		{"gateway not fronting a backend", [][2]string{{"[t1/payment, t1/ledger]", "[t1/payment]"}},
			"invalid topology: test.yaml:7: workload \"t1/gateway\" must be allowed to call \"t1/ledger\": the catalogue's gateway calls its tenant's ledger"},
		{"no gateway", [][2]string{{gatewayBlock, ""}},
			"invalid topology: test.yaml:4: tenant \"t1\" runs no gateway, the only way into a tenant: add workload \"t1/gateway\""},
		{"only a gateway", [][2]string{{paymentBlock, ""}, {ledgerBlock, ""}, {"    calls: [t1/payment, t1/ledger]\n", ""}},
			"invalid topology: test.yaml:4: tenant \"t1\" runs only a gateway: choose its services from the catalogue (gateway, user, account, payment, ledger)"},
		{"edge not calling a gateway", [][2]string{{ledgerBlock, ledgerBlock + "  - name: edge\n    service: edge\n    platform: true\n    listen: 127.0.0.1:7\n    health: 127.0.0.1:8\n"}},
			"invalid topology: test.yaml:24: workload \"edge\" must call \"t1/gateway\", tenant t1's way in"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := good
			for _, e := range tc.edits {
				edited := strings.Replace(src, e[0], e[1], 1)
				if edited == src {
					t.Fatalf("fixture edit %q did not apply", e[0])
				}
				src = edited
			}
			_, err := Parse("test.yaml", []byte(src))
			if err == nil {
				t.Fatal("Parse succeeded, want error")
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("error %v does not wrap ErrInvalid", err)
			}
			if diff := cmp.Diff(tc.want, err.Error()); diff != "" {
				t.Errorf("error mismatch (-want +got):\n%s", diff)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error is not one line: %q", err)
			}
		})
	}
}

// TestCatalogueTenants parses tenants that choose different halves of the catalogue, or all
// of it, and checks that each is accepted and resolves its services within itself.
func TestCatalogueTenants(t *testing.T) {
	block := func(tenant, service string, port int, calls ...string) string {
		s := fmt.Sprintf("  - name: %s/%s\n    tenant: %s\n    service: %s\n    listen: 127.0.0.1:%d\n    health: 127.0.0.1:%d\n",
			tenant, service, tenant, service, port, port+1)
		if len(calls) > 0 {
			s += "    calls: [" + strings.Join(calls, ", ") + "]\n"
		}
		return s
	}
	src := "trust_domain: example.org\nplatform_namespace: platform\ntenants:\n" +
		"  - name: retail\n    database: retail\n  - name: pay\n    database: pay\n  - name: full\n    database: full\n" +
		"workloads:\n  - name: edge\n    service: edge\n    platform: true\n    listen: 127.0.0.1:100\n    health: 127.0.0.1:101\n" +
		"    calls: [retail/gateway, pay/gateway, full/gateway]\n" +
		block("retail", "gateway", 200, "retail/user", "retail/account") + block("retail", "user", 202, "retail/account") + block("retail", "account", 204) +
		block("pay", "gateway", 300, "pay/payment", "pay/ledger") + block("pay", "payment", 302, "pay/ledger") + block("pay", "ledger", 304) +
		block("full", "gateway", 400, "full/user", "full/account", "full/payment", "full/ledger") + block("full", "user", 402, "full/account") +
		block("full", "account", 404) + block("full", "payment", 406, "full/ledger") + block("full", "ledger", 408)
	topo, err := Parse("catalogue.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	got := map[string][]string{}
	for _, tn := range topo.Tenants {
		for _, e := range Catalogue() {
			if w, ok := topo.TenantWorkload(tn.Name, e.Service); ok {
				got[tn.Name] = append(got[tn.Name], w.Name)
			}
		}
	}
	want := map[string][]string{
		"retail": {"retail/gateway", "retail/user", "retail/account"},
		"pay":    {"pay/gateway", "pay/payment", "pay/ledger"},
		"full":   {"full/gateway", "full/user", "full/account", "full/payment", "full/ledger"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("TenantWorkload mismatch (-want +got):\n%s", diff)
	}
	if w, ok := topo.TenantWorkload("", "edge"); ok {
		t.Errorf("TenantWorkload(\"\", edge) = %s, want none: platform workloads belong to no tenant", w.Name)
	}
}

func TestCrossTenantCallRefused(t *testing.T) {
	src := strings.Replace(good, "tenants:\n", "tenants:\n  - name: t2\n    database: t2_db\n", 1)
	src = strings.Replace(src, "  - name: t1/ledger\n    tenant: t1", "  - name: t2/ledger\n    tenant: t2", 1)
	src = strings.Replace(src, "    calls: [t1/ledger]\n", "    calls: [t2/ledger]\n", 1)
	src = strings.Replace(src, "[t1/payment, t1/ledger]", "[t1/payment]", 1)
	_, err := Parse("test.yaml", []byte(src))
	if err == nil || !strings.Contains(err.Error(), "may not call") {
		t.Fatalf("Parse error = %v, want cross-tenant refusal", err)
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(good))
	f.Add(Embedded())
	f.Fuzz(func(t *testing.T, b []byte) {
		topo, err := Parse("fuzz.yaml", b)
		if err != nil {
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("multi-line error: %q", err)
			}
			return
		}
		for _, w := range topo.Workloads {
			if got, ok := topo.WorkloadByID(w.ID); !ok || got.Name != w.Name {
				t.Errorf("WorkloadByID(%s) = %v, %v", w.ID, got.Name, ok)
			}
		}
	})
}
