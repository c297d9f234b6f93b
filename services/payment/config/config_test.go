package config

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/ztbank/ztbank/services/payment/store"
)

// base is the least environment the shared loader accepts for the payment workload.
var base = map[string]string{
	"ZTBANK_WORKLOAD": "bank-b/payment",
	"ZTBANK_DB_DSN":   "host=127.0.0.1 dbname=bank_b user=payment_svc sslmode=verify-full sslrootcert=system",
	"ZTBANK_DB_AUTH":  "passwordfile", "ZTBANK_DB_PASSWORD_FILE": "/tmp/pw",
	"SPIFFE_ENDPOINT_SOCKET": "unix:///tmp/agent.sock",
}

func getenv(extra map[string]string) func(string) string {
	return func(k string) string {
		if v, ok := extra[k]; ok {
			return v
		}
		return base[k]
	}
}

// TestPaymentSettings: the failpoint is off unless a test sets it, recovery runs at its
// default period, and bad values are one-line errors naming the variable.
func TestPaymentSettings(t *testing.T) {
	type got struct {
		Failpoint    string
		RecoverEvery time.Duration
		Lease        time.Duration
		Err          string
	}
	for _, tc := range []struct {
		name string
		env  map[string]string
		want got
	}{
		{"defaults: failpoint off", nil, got{"", store.DefaultRecoverEvery, store.DefaultLease, ""}},
		{"explicit off", map[string]string{"PAYMENT_FAILPOINT": "off"}, got{"", store.DefaultRecoverEvery, store.DefaultLease, ""}},
		{"test failpoint", map[string]string{"PAYMENT_FAILPOINT": FailAfterLedgerPost}, got{FailAfterLedgerPost, store.DefaultRecoverEvery, store.DefaultLease, ""}},
		{"unknown failpoint", map[string]string{"PAYMENT_FAILPOINT": "on"}, got{Err: "PAYMENT_FAILPOINT"}},
		{"period", map[string]string{"PAYMENT_RECOVER_EVERY": "2s"}, got{"", 2 * time.Second, store.DefaultLease, ""}},
		{"lease", map[string]string{"PAYMENT_LEASE": "5s"}, got{"", store.DefaultRecoverEvery, 5 * time.Second, ""}},
		{"bad lease", map[string]string{"PAYMENT_LEASE": "soon"}, got{Err: "PAYMENT_LEASE"}},
		{"bad period", map[string]string{"PAYMENT_RECOVER_EVERY": "-1s"}, got{Err: "PAYMENT_RECOVER_EVERY"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := Load(getenv(tc.env))
			g := got{Failpoint: cfg.Failpoint, RecoverEvery: cfg.RecoverEvery, Lease: cfg.Lease}
			if err != nil {
				if tc.want.Err == "" || !strings.Contains(err.Error(), tc.want.Err) || strings.Contains(err.Error(), "\n") {
					t.Fatalf("Load: %v", err)
				}
				return
			}
			if tc.want.Err != "" {
				t.Fatalf("Load accepted %v", tc.env)
			}
			if diff := cmp.Diff(tc.want, g); diff != "" {
				t.Errorf("config mismatch (-want +got):\n%s", diff)
			}
		})
	}
}
