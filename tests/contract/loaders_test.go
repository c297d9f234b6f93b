package contract

import (
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestLoadersRefuseBadValuesInOneLine runs each binary's loader (the function its main uses)
// on environments with one fault and expects a one-line error naming the variable.
func TestLoadersRefuseBadValuesInOneLine(t *testing.T) {
	mesh := map[string]string{"ZTBANK_TRANSPORT_MODE": "mesh", "ZTBANK_PEER_URL_TEMPLATE": "http://{service}.{namespace}:8443"}
	db := map[string]string{"ZTBANK_DB_DSN": "host=db dbname=bank_a user=account_svc sslmode=verify-full", "ZTBANK_DB_AUTH": "rdsiam", "ZTBANK_DB_REGION": "eu-west-1"}
	with := func(ms ...map[string]string) map[string]string {
		out := map[string]string{}
		for _, m := range ms {
			for k, v := range m {
				out[k] = v
			}
		}
		return out
	}
	for _, tc := range []struct {
		name, binary string
		env          map[string]string
		want         string
	}{
		{"no workload", "gateway", mesh, "ZTBANK_WORKLOAD is not set"},
		{"workload of another binary", "gateway", with(mesh, map[string]string{"ZTBANK_WORKLOAD": "bank-a/user"}), `ZTBANK_WORKLOAD "bank-a/user" runs service "user"`},
		{"mesh without peer URL", "gateway", map[string]string{"ZTBANK_WORKLOAD": "bank-a/gateway", "ZTBANK_TRANSPORT_MODE": "mesh"}, "ZTBANK_PEER_URL_TEMPLATE is not set"},
		{"direct without socket", "gateway", map[string]string{"ZTBANK_WORKLOAD": "bank-a/gateway"}, "SPIFFE_ENDPOINT_SOCKET is not set"},
		{"sampler typo", "gateway", with(mesh, map[string]string{"ZTBANK_WORKLOAD": "bank-a/gateway", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_TRACES_SAMPLER": "ratio"}), "OTEL_TRACES_SAMPLER"},
		{"resource attributes", "gateway", with(mesh, map[string]string{"ZTBANK_WORKLOAD": "bank-a/gateway", "OTEL_RESOURCE_ATTRIBUTES": "justaword"}), "OTEL_RESOURCE_ATTRIBUTES"},
		{"no DSN", "account", with(mesh, map[string]string{"ZTBANK_WORKLOAD": "bank-a/account"}), "ZTBANK_DB_DSN is not set"},
		{"DSN with a password", "account", with(mesh, db, map[string]string{"ZTBANK_WORKLOAD": "bank-a/account", "ZTBANK_DB_DSN": "host=db user=u password=p sslmode=verify-full"}), "ZTBANK_DB_DSN contains a password"},
		{"DSN not verify-full", "account", with(mesh, db, map[string]string{"ZTBANK_WORKLOAD": "bank-a/account", "ZTBANK_DB_DSN": "host=db user=u sslmode=require"}), "ZTBANK_DB_DSN"},
		{"rdsiam without region", "ledger", with(mesh, db, map[string]string{"ZTBANK_WORKLOAD": "bank-b/ledger", "ZTBANK_DB_REGION": ""}), "ZTBANK_DB_REGION is not set"},
		{"edge without issuers", "edge", mesh, "EDGE_ISSUERS is not set"},
		{"edge http opt-in typo", "edge", with(mesh, map[string]string{"EDGE_ISSUERS": "bank-a=https://idp.example", "EDGE_ALLOW_HTTP_ISSUERS": "yes"}), "EDGE_ALLOW_HTTP_ISSUERS"},
		{"edge direct without certificate", "edge", map[string]string{"SPIFFE_ENDPOINT_SOCKET": "unix:///s", "EDGE_ISSUERS": "bank-a=https://idp.example", "EDGE_ENROLMENT": "claims"}, "EDGE_TLS_CERT and EDGE_TLS_KEY are required"},
		{"edge without enrolment", "edge", with(mesh, map[string]string{"EDGE_ISSUERS": "bank-a=https://idp.example"}), "EDGE_ENROLMENT is not set"},
		{"admin DSN not verify-full", "dbadmin", map[string]string{"ZTBANK_DB_ADMIN_DSN": "postgres://u@db/postgres?sslmode=require"}, "ZTBANK_DB_ADMIN_DSN"},
		{"provider issuer not a URL", "devoidc", map[string]string{"DEVOIDC_ISSUER": "devoidc:9998"}, "DEVOIDC_ISSUER"},
		{"provider listen not host:port", "devoidc", map[string]string{"DEVOIDC_LISTEN": "9998"}, "DEVOIDC_LISTEN"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := binaryNamed(tc.binary).Load(func(k string) string { return tc.env[k] })
			if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
				t.Errorf("%s loader error = %v, want one line containing %q", tc.binary, err, tc.want)
			}
		})
	}
}

// TestLoadersReadOnlyWhatTheModeUses: the variables of the other mode or auth method are not
// read, so a deployment that sets them is reported as setting unread variables.
func TestLoadersReadOnlyWhatTheModeUses(t *testing.T) {
	for _, tc := range []struct {
		name, binary string
		env          map[string]string
		read, unread []string
	}{
		{"mesh", "gateway", map[string]string{"ZTBANK_WORKLOAD": "bank-a/gateway", "ZTBANK_TRANSPORT_MODE": "mesh", "ZTBANK_PEER_URL_TEMPLATE": "http://{service}:8443"},
			[]string{"ZTBANK_PEER_URL_TEMPLATE", "ZTBANK_PEER_ADDR_BANK_A_USER", "ZTBANK_PEER_ADDR_EDGE"}, []string{"SPIFFE_ENDPOINT_SOCKET", "ZTBANK_SVID_TIMEOUT", "ZTBANK_PEER_ADDR_BANK_B_LEDGER"}},
		{"direct", "gateway", map[string]string{"ZTBANK_WORKLOAD": "bank-a/gateway", "SPIFFE_ENDPOINT_SOCKET": "unix:///s"},
			[]string{"SPIFFE_ENDPOINT_SOCKET", "ZTBANK_SVID_TIMEOUT"}, nil},
		{"passwordfile", "user", map[string]string{"ZTBANK_WORKLOAD": "bank-a/user", "SPIFFE_ENDPOINT_SOCKET": "unix:///s",
			"ZTBANK_DB_DSN": "host=db user=user_svc sslmode=verify-full", "ZTBANK_DB_AUTH": "passwordfile", "ZTBANK_DB_PASSWORD_FILE": "/p"},
			[]string{"ZTBANK_DB_PASSWORD_FILE"}, []string{"ZTBANK_DB_REGION"}},
		{"rdsiam", "user", map[string]string{"ZTBANK_WORKLOAD": "bank-a/user", "SPIFFE_ENDPOINT_SOCKET": "unix:///s",
			"ZTBANK_DB_DSN": "host=db user=user_svc sslmode=verify-full", "ZTBANK_DB_AUTH": "rdsiam", "ZTBANK_DB_REGION": "eu-west-1"},
			[]string{"ZTBANK_DB_REGION"}, []string{"ZTBANK_DB_PASSWORD_FILE"}},
		{"tracing off", "payment", map[string]string{"ZTBANK_WORKLOAD": "bank-b/payment", "SPIFFE_ENDPOINT_SOCKET": "unix:///s",
			"ZTBANK_DB_DSN": "host=db user=payment_svc sslmode=verify-full", "ZTBANK_DB_AUTH": "rdsiam", "ZTBANK_DB_REGION": "r"},
			[]string{"OTEL_SERVICE_NAME", "OTEL_RESOURCE_ATTRIBUTES"}, []string{"OTEL_TRACES_SAMPLER", "OTEL_EXPORTER_OTLP_HEADERS"}},
		{"edge with EDGE_ISSUERS", "edge", map[string]string{"ZTBANK_TRANSPORT_MODE": "mesh", "ZTBANK_PEER_URL_TEMPLATE": "http://{service}:8443", "EDGE_ISSUERS": "bank-a=https://idp.example", "EDGE_ENROLMENT": "claims"},
			[]string{"EDGE_ISSUERS"}, []string{"ZTBANK_OIDC_ISSUER", "ZTBANK_AUTHZ_POLICY_DIR"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l, err := binaryNamed(tc.binary).Load(func(k string) string { return tc.env[k] })
			if err != nil {
				t.Fatal(err)
			}
			var missing, extra []string
			for _, v := range tc.read {
				if !slices.Contains(l.Read, v) {
					missing = append(missing, v)
				}
			}
			for _, v := range tc.unread {
				if slices.Contains(l.Read, v) {
					extra = append(extra, v)
				}
			}
			if diff := cmp.Diff([][]string{nil, nil}, [][]string{missing, extra}); diff != "" {
				t.Errorf("[not read, read but should not be] mismatch (-want +got):\n%s", diff)
			}
		})
	}
}
