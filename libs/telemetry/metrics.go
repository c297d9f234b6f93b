package telemetry

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
