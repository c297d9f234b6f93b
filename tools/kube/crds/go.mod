// Modules whose zips carry the CRDs that deploy/check/apiserver installs into the test API
// server. Pinned here (and hashed in go.sum) so the test reads them from the module cache
// through `go mod download -json`; no Go code imports them, so they do not touch any build.
module github.com/ztbank/ztbank/tools/kube/crds

go 1.26.0

require (
	// config/crds/bases: the external-secrets.io v1 CRDs.
	github.com/external-secrets/external-secrets v1.3.2
	// example/prometheus-operator-crd: ServiceMonitor, PodMonitor and PrometheusRule (the
	// monitoring.coreos.com CRDs kube-prometheus-stack installs), ADR 0975.
	github.com/prometheus-operator/prometheus-operator v0.85.0
	// config/crd/bases: ClusterSPIFFEID and the other spire.spiffe.io CRDs.
	github.com/spiffe/spire-controller-manager v0.6.3
	// Istio's full CRD file: manifests/charts/base/files/crd-all.gen.yaml. The proxy serves
	// istio.io/istio only as master-branch pseudo-versions.
	istio.io/istio v0.0.0-20260827124520-eed52ebb66ad
)
