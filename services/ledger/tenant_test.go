package main

import (
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"

	"github.com/ztbank/ztbank/devkit/servertest"
	"github.com/ztbank/ztbank/libs/topology"
)

// withTenant is the committed topology plus a payments-half tenant it does not have.
func withTenant(t *testing.T, tenant string) *topology.Topology {
	t.Helper()
	src := string(topology.Embedded())
	// The workload list is the file's last key, so the new workloads are appended at its end.
	edited := strings.Replace(src, "tenants:\n", "tenants:\n  - name: "+tenant+"\n    database: "+strings.ReplaceAll(tenant, "-", "_")+"\n", 1)
	edited = strings.Replace(edited, "calls: [bank-a/gateway, bank-b/gateway]\n", "calls: [bank-a/gateway, bank-b/gateway, "+tenant+"/gateway]\n", 1)
	edited += `
  - name: ` + tenant + `/gateway
    tenant: ` + tenant + `
    service: gateway
    listen: 127.0.0.1:8701
    health: 127.0.0.1:9421
    calls: [` + tenant + `/payment, ` + tenant + `/ledger]
  - name: ` + tenant + `/payment
    tenant: ` + tenant + `
    service: payment
    listen: 127.0.0.1:8702
    health: 127.0.0.1:9422
    database_role: payment_svc
    calls: [` + tenant + `/ledger]
  - name: ` + tenant + `/ledger
    tenant: ` + tenant + `
    service: ledger
    listen: 127.0.0.1:8703
    health: 127.0.0.1:9423
    database_role: ledger_svc
`
	if edited == src {
		t.Fatal("topology edit did not apply")
	}
	topo, err := topology.Parse("with-"+tenant+".yaml", []byte(edited))
	if err != nil {
		t.Fatal(err)
	}
	return topo
}

// TestServesAnyTenant runs the ledger's real router as the workload of a tenant that exists
// only in a test topology. Its routes admit that tenant's gateway and payment by role, as
// they admit bank-b's: no code names a tenant. A request the route admits reaches the
// handler and is refused there for its malformed input (400); one the route refuses never
// gets that far.
func TestServesAnyTenant(t *testing.T) {
	const tenant = "bank-z"
	h := servertest.NewIn(t, withTenant(t, tenant), tenant+"/ledger")
	h.Serve(NewServer(h.Runtime, nil, nil)) // no store: every admitted request here fails validation first
	tok := h.TokenFor(tenant, uuid.NewString(), "customer")
	type result struct {
		From, Route string
		Status      int
	}
	var got, want []result
	for _, tc := range []struct {
		from, method, path, body string
		want                     int
	}{
		{tenant + "/gateway", "GET", "/v1/accounts/not-a-uuid/balance", "", http.StatusBadRequest},
		{tenant + "/payment", "GET", "/v1/accounts/not-a-uuid/balance", "", http.StatusForbidden},
		{tenant + "/payment", "POST", "/v1/postings", "not json", http.StatusBadRequest},
		{tenant + "/gateway", "POST", "/v1/postings", "not json", http.StatusForbidden},
		{"bank-b/payment", "POST", "/v1/postings", "not json", http.StatusForbidden},
	} {
		hdr := http.Header{"Authorization": {"Bearer " + tok}}
		if tc.body != "" {
			hdr.Set("Content-Type", "application/json")
		}
		r := h.Send(tc.from, tc.method, tc.path, tc.body, hdr)
		got = append(got, result{tc.from, tc.method + " " + tc.path, r.Status})
		want = append(want, result{tc.from, tc.method + " " + tc.path, tc.want})
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("statuses mismatch (-want +got):\n%s", diff)
	}
}
