package telemetry

import (
	"errors"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// The platform's metric names. They are fixed: dashboards and alert rules in
// deploy/observability refer to them, and a test checks that those files use no others.
const (
	MetricHTTPRequests           = "ztbank_http_requests_total"
	MetricHTTPDuration           = "ztbank_http_request_duration_seconds"
	MetricAuthzDecisions         = "ztbank_authz_decisions_total"
	MetricHandshakeFailures      = "ztbank_mtls_handshake_failures_total"
	MetricSVIDExpiry             = "ztbank_svid_expiry_seconds"
	MetricWorkloadAPIDisconnects = "ztbank_workloadapi_disconnects_total"
	MetricDBCredentialRefreshes  = "ztbank_db_credential_refreshes_total"
	MetricDBCredentialFailures   = "ztbank_db_credential_failures_total"
)

// Register registers c, or returns the collector already registered under its name, so a
// process that builds several routers (tests do) shares one set of series.
func Register[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing
			}
		}
	}
	return c
}

// Lazy returns a function that builds a process-wide collector on its first call and
// registers it on the default registry (Register); every call returns that one. Importing a
// package then registers nothing, and only the series a binary uses appear on its /metrics.
func Lazy[C prometheus.Collector](build func() C) func() C {
	return sync.OnceValue(func() C { return Register(prometheus.DefaultRegisterer, build()) })
}
