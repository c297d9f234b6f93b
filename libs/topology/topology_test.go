package topology

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestDefaultTopology(t *testing.T) {
	topo := Default()
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

const good = `trust_domain: example.org
platform_namespace: platform
tenants:
  - name: t1
    database: t1_db
workloads:
  - name: t1/api
    tenant: t1
    service: api
    listen: 127.0.0.1:1
    health: 127.0.0.1:2
    calls: [t1/db]
  - name: t1/db
    tenant: t1
    service: db
    listen: 127.0.0.1:3
    health: 127.0.0.1:4
`

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct {
		name, old, new string
		want           string // the whole one-line error
	}{
		{"unknown tenant", "    tenant: t1\n    service: db", "    tenant: t9\n    service: db",
			"invalid topology: test.yaml:13: workload \"t1/db\": unknown tenant \"t9\""},
		{"misnamed workload", "  - name: t1/db\n    tenant: t1\n    service: db", "  - name: t1/db\n    tenant: t1\n    service: api",
			"invalid topology: test.yaml:13: workload \"t1/db\": must be named \"t1/api\""},
		{"duplicate SPIFFE ID", "  - name: t1/db\n    tenant: t1\n    service: db", "  - name: t1/api\n    tenant: t1\n    service: api",
			"invalid topology: test.yaml:13: duplicate SPIFFE ID spiffe://example.org/ns/t1/sa/api (also workload \"t1/api\" at line 7)"},
		{"call edge to a missing workload", "calls: [t1/db]", "calls: [t1/ledger]",
			"invalid topology: test.yaml:12: workload \"t1/api\" calls missing workload \"t1/ledger\""},
		{"unknown field", "    health: 127.0.0.1:4", "    health: 127.0.0.1:4\n    colour: red",
			"invalid topology: test.yaml: line 18: unknown field \"colour\""},
		{"bad trust domain", "example.org", "Example Org",
			"invalid topology: test.yaml:1: trust_domain \"Example Org\" is not a valid SPIFFE trust domain"},
		{"reused address", "127.0.0.1:4", "127.0.0.1:1",
			"invalid topology: test.yaml:13: workload \"t1/db\": health address 127.0.0.1:1 already used by t1/api"},
		{"external workload with an address", "  - name: t1/db\n    tenant: t1\n    service: db\n    listen: 127.0.0.1:3",
			"  - name: t1/db\n    tenant: t1\n    service: db\n    external: true\n    listen: 127.0.0.1:3",
			"invalid topology: test.yaml:13: workload \"t1/db\": an external workload has no local addresses or database"},
		{"self call", "calls: [t1/db]", "calls: [t1/api]",
			"invalid topology: test.yaml:12: workload \"t1/api\" calls itself"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := strings.Replace(good, tc.old, tc.new, 1)
			if src == good {
				t.Fatalf("fixture replacement %q did not apply", tc.old)
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

func TestCrossTenantCallRefused(t *testing.T) {
	src := strings.Replace(good, "tenants:\n", "tenants:\n  - name: t2\n    database: t2_db\n", 1)
	src = strings.Replace(src, "  - name: t1/db\n    tenant: t1", "  - name: t2/db\n    tenant: t2", 1)
	src = strings.Replace(src, "calls: [t1/db]", "calls: [t2/db]", 1)
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
