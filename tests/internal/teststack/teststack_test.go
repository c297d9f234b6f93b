package teststack

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"github.com/ztbank/ztbank/tools/devstack/stack"
)

func TestSample(t *testing.T) {
	const metrics = `# HELP ztbank_db_credential_refreshes_total New passwords a pool has used.
# TYPE ztbank_db_credential_refreshes_total counter
ztbank_db_credential_refreshes_total{role="ledger_svc",workload="bank-b/ledger"} 3
ztbank_mtls_handshake_failures_total{reason="unauthorized_peer"} 2.5
ztbank_mtls_handshake_failures_total 7
`
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/metrics" {
			http.NotFound(w, r)
			return
		}
		fmt.Fprint(w, metrics)
	}))
	defer srv.Close()
	svc := &stack.Service{Health: strings.TrimPrefix(srv.URL, "http://")}
	for _, tc := range []struct {
		name, series string
		want         float64
	}{
		{"exact name and labels", regexp.QuoteMeta(`ztbank_mtls_handshake_failures_total{reason="unauthorized_peer"}`), 2.5},
		{"name without labels is not a prefix match", regexp.QuoteMeta("ztbank_mtls_handshake_failures_total"), 7},
		{"labels by pattern", `ztbank_db_credential_refreshes_total\{[^}]*role="ledger_svc"[^}]*\}`, 3},
		{"not exported yet counts as zero", regexp.QuoteMeta("ztbank_db_pool_acquires_total"), 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Sample(t, svc, tc.series); got != tc.want {
				t.Errorf("Sample(%s) = %v, want %v", tc.series, got, tc.want)
			}
		})
	}
}
