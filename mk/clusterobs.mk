# Cluster observability (issue 16, ADR 0975): ServiceMonitors, PrometheusRule, dashboard
# ConfigMaps, the OpenTelemetry Collector and the Falco outbound allowlists. `make generate`
# writes the generated parts; deploy-check (topogen, policy, manifest), unit
# (tests/observability/deployfiles, tests/contract) and kube-test check them.
.PHONY: otelcol-check clusterobs-check

# The collector config is validated by the collector's own loader and factories, built from
# the Go module proxy (tools/otelcol, core components at v0.165.0). About 2 minutes cold on
# 2 cores (the collector's packages compile once), 25 s warm; offline once the modules are cached.
TEST_EXTRA += otelcol-check

otelcol-check: ## validate deploy/observability/otelcol/config.yaml with the OpenTelemetry Collector's own config loader (plus planted defects)
	@cd tools/otelcol && GOWORK=off $(GO) test -count=1 ./...

clusterobs-check: obs-tools otelcol-check ## the cluster-observability checks alone: generated files current, labels, NetworkPolicies vs Falco vs collector, promtool, contract
	@cd deploy/check && GOWORK=off $(GO) test -count=1 ./topogen/ ./policy/ ./manifest/
	@$(GO) test -count=1 ./tests/observability/deployfiles ./tests/contract
