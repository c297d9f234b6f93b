package topogen

import (
	"fmt"
	"sort"
	"strings"

	"github.com/ztbank/ztbank/libs/topology"
)

// Cluster observability (ADR 0975): kube-prometheus-stack scrapes every ztbank Service's
// health port through the Istio sidecars with mTLS, and the OpenTelemetry Collector in
// OTLPNamespace (deploy/observability) forwards traces to Jaeger and logs to Loki. These are
// the names of the parts the overlays do not deploy themselves; docs/deploy.md installs them.
const (
	// MonitoringNamespace is where kube-prometheus-stack runs, and PrometheusServiceAccount
	// the ServiceAccount its chart gives the Prometheus pods (release name
	// "kube-prometheus-stack").
	MonitoringNamespace      = "monitoring"
	PrometheusServiceAccount = "kube-prometheus-stack-prometheus"
	// PrometheusRelease is the label the chart's Prometheus selects ServiceMonitors and
	// PrometheusRules by (serviceMonitorSelector / ruleSelector default to release=<name>).
	PrometheusRelease = "kube-prometheus-stack"
	// PrometheusCertDir is where the Prometheus pod's Istio sidecar writes the workload
	// certificate it scrapes with (proxyMetadata OUTPUT_CERTS plus a shared emptyDir).
	PrometheusCertDir = "/etc/prom-certs"
	// MetricsPath is the only path the metrics AuthorizationPolicy opens on HealthPort.
	MetricsPath = "/metrics"

	// The collector: its Deployment/Service name and pod label, and its OTLP ports.
	CollectorName = "otel-collector"
	OTLPGRPCPort  = 4317
	// Where the collector exports: Jaeger's OTLP gRPC receiver and Loki's HTTP port (OTLP
	// logs at /otlp/v1/logs), both installed by their charts into OTLPNamespace.
	JaegerName       = "jaeger"
	JaegerOTLPPort   = 4317
	LokiName         = "loki"
	LokiHTTPPort     = 3100
	collectorMetrics = 8888
)

// prometheusPrincipal is the Istio principal of kube-prometheus-stack's Prometheus.
func (g gen) prometheusPrincipal() string {
	return fmt.Sprintf("%s/ns/%s/sa/%s", g.t.TrustDomain.Name(), MonitoringNamespace, PrometheusServiceAccount)
}

func prometheusPeer() obj {
	return obj{
		"namespaceSelector": obj{"matchLabels": obj{"kubernetes.io/metadata.name": MonitoringNamespace}},
		"podSelector":       obj{"matchLabels": obj{"app.kubernetes.io/name": "prometheus"}},
	}
}

func collectorPeer() obj {
	return obj{
		"namespaceSelector": obj{"matchLabels": obj{"kubernetes.io/metadata.name": OTLPNamespace}},
		"podSelector":       obj{"matchLabels": obj{"app.kubernetes.io/name": CollectorName}},
	}
}

var partOf = obj{"app.kubernetes.io/part-of": "ztbank"}

// ourWorkloads are the topology workloads the overlays deploy, in topology order. External
// ones (Emissary) are not ours to deploy; the policies admit them as callers.
func (g gen) ourWorkloads() []topology.Workload {
	var out []topology.Workload
	for _, w := range g.t.Workloads {
		if !w.External {
			out = append(out, w)
		}
	}
	return out
}

// observability renders observability.yaml: the collector's namespace, one ServiceMonitor,
// one metrics AuthorizationPolicy and one scrape NetworkPolicy per ztbank namespace, the
// SPIFFE identity of Prometheus, and the collector's NetworkPolicy.
func (g gen) observability() []obj {
	out := []obj{{
		"apiVersion": "v1",
		"kind":       "Namespace",
		"metadata": obj{"name": OTLPNamespace, "labels": obj{
			"app.kubernetes.io/part-of":          "ztbank",
			"pod-security.kubernetes.io/enforce": "restricted",
			// The collector, Jaeger and Loki are outside the mesh: every sender is a sidecar
			// that falls back to plain OTLP for a destination without one (ADR 0975).
			"istio-injection": "disabled",
		}},
	}}
	for _, ns := range g.allNamespaces() {
		out = append(out,
			obj{
				"apiVersion": "monitoring.coreos.com/v1",
				"kind":       "ServiceMonitor",
				"metadata": obj{"name": "ztbank", "namespace": ns, "labels": obj{
					"app.kubernetes.io/part-of": "ztbank",
					"release":                   PrometheusRelease,
				}},
				"spec": obj{
					// job = the Service's name (the operator's default), so namespace + job
					// name the topology workload, e.g. bank-a + gateway.
					"selector": obj{"matchLabels": partOf},
					"endpoints": []any{obj{
						"port":     "http-health",
						"path":     MetricsPath,
						"interval": "30s",
						// Through the sidecar, which requires mTLS (STRICT everywhere): Prometheus
						// presents the SVID its own sidecar wrote out. Workload certificates carry
						// only a SPIFFE URI SAN, so there is no host name to verify; the server
						// side's AuthorizationPolicy is what admits Prometheus alone.
						"scheme": "https",
						"tlsConfig": obj{
							"caFile":             PrometheusCertDir + "/root-cert.pem",
							"certFile":           PrometheusCertDir + "/cert-chain.pem",
							"keyFile":            PrometheusCertDir + "/key.pem",
							"insecureSkipVerify": true,
						},
					}},
				},
			},
			obj{
				"apiVersion": "security.istio.io/v1",
				"kind":       "AuthorizationPolicy",
				"metadata":   obj{"name": "allow-metrics-scrape", "namespace": ns},
				"spec": obj{
					"selector": obj{"matchLabels": partOf},
					"action":   "ALLOW",
					"rules": []any{obj{
						"from": []any{obj{"source": obj{"principals": []any{g.prometheusPrincipal()}}}},
						"to": []any{obj{"operation": obj{
							"ports":   []any{fmt.Sprint(HealthPort)},
							"methods": []any{"GET"},
							"paths":   []any{MetricsPath},
						}}},
					}},
				},
			},
			obj{
				"apiVersion": "networking.k8s.io/v1",
				"kind":       "NetworkPolicy",
				"metadata":   obj{"name": "allow-metrics-scrape", "namespace": ns},
				"spec": obj{
					"podSelector": obj{"matchLabels": partOf},
					"policyTypes": []any{"Ingress"},
					"ingress":     []any{obj{"from": []any{prometheusPeer()}, "ports": tcp(HealthPort)}},
				},
			},
		)
	}
	out = append(out, obj{
		"apiVersion": "spire.spiffe.io/v1alpha1",
		"kind":       "ClusterSPIFFEID",
		"metadata":   obj{"name": "ztbank-prometheus", "labels": partOf},
		"spec":       clusterSPIFFEIDSpec(MonitoringNamespace, "prometheus"),
	})
	// The collector: OTLP in from the ztbank pods only, out to Jaeger, Loki and DNS only.
	var senders []any
	for _, ns := range g.allNamespaces() {
		senders = append(senders, obj{
			"namespaceSelector": obj{"matchLabels": obj{"kubernetes.io/metadata.name": ns}},
			"podSelector":       obj{"matchLabels": partOf},
		})
	}
	out = append(out, obj{
		"apiVersion": "networking.k8s.io/v1",
		"kind":       "NetworkPolicy",
		"metadata":   obj{"name": CollectorName, "namespace": OTLPNamespace},
		"spec": obj{
			"podSelector": obj{"matchLabels": obj{"app.kubernetes.io/name": CollectorName}},
			"policyTypes": []any{"Ingress", "Egress"},
			"ingress": []any{
				obj{"from": senders, "ports": []any{
					obj{"protocol": "TCP", "port": OTLPGRPCPort}, obj{"protocol": "TCP", "port": OTLPPort},
				}},
			},
			"egress": []any{
				obj{"to": []any{obj{"podSelector": obj{"matchLabels": obj{"app.kubernetes.io/name": JaegerName}}}}, "ports": tcp(JaegerOTLPPort)},
				obj{"to": []any{obj{"podSelector": obj{"matchLabels": obj{"app.kubernetes.io/name": LokiName}}}}, "ports": tcp(LokiHTTPPort)},
				obj{
					"to": []any{obj{
						"namespaceSelector": obj{"matchLabels": obj{"kubernetes.io/metadata.name": "kube-system"}},
						"podSelector":       obj{"matchLabels": obj{"k8s-app": "kube-dns"}},
					}},
					"ports": []any{obj{"protocol": "UDP", "port": 53}, obj{"protocol": "TCP", "port": 53}},
				},
			},
		},
	})
	return out
}

// Flow is one outbound connection a ztbank pod makes, as Falco sees it: the pod (namespace
// and app.kubernetes.io/name), the destination port and, for destinations outside the
// cluster networks, the host names it may resolve to.
type Flow struct {
	Namespace, App string
	Port           int
	Hosts          []string // empty: any address in the cluster networks
	Why            string
}

// OutboundFlows lists every outbound connection the topology gives a ztbank pod (app
// container and Istio sidecar alike: Falco sees the sidecar's connect for the app's call):
// DNS, istiod, OTLP to the collector, calls to peers, the JWKS fetch from the edge, the
// database, and the edge's OIDC discovery and JWKS fetches to each tenant's issuer
// (issuers: host:port of each, from the overlay's edge configuration).
func OutboundFlows(t *topology.Topology, issuers []string) ([]Flow, error) {
	g := gen{t: t}
	edge, hasEdge := g.issuer()
	var out []Flow
	for _, w := range g.ourWorkloads() {
		add := func(port int, why string, hosts ...string) {
			out = append(out, Flow{Namespace: w.Namespace, App: w.Service, Port: port, Hosts: hosts, Why: why})
		}
		add(53, "DNS")
		add(15012, "istiod (sidecar xDS and certificates)")
		add(OTLPGRPCPort, "OTLP/gRPC to the collector")
		add(OTLPPort, "OTLP/HTTP to the collector")
		// Peers and the edge's JWKS (tenant workloads verify internal JWTs) share the API port.
		var why []string
		if len(w.Calls) > 0 {
			why = append(why, "calls "+strings.Join(w.Calls, ", "))
		}
		if hasEdge && w.Name != edge.Name {
			why = append(why, "JWKS from "+edge.Name)
		}
		if len(why) > 0 {
			add(APIPort, strings.Join(why, "; "))
		}
		if w.DBRole != "" {
			add(PostgresPort, "database "+w.DBRole)
		}
		if w.Public != "" {
			byPort := map[int][]string{}
			for _, is := range issuers {
				host, port, ok := strings.Cut(is, ":")
				if !ok {
					return nil, fmt.Errorf("issuer %q: want host:port", is)
				}
				var p int
				if _, err := fmt.Sscan(port, &p); err != nil {
					return nil, fmt.Errorf("issuer %q: %w", is, err)
				}
				byPort[p] = append(byPort[p], host)
			}
			var ports []int
			for p := range byPort {
				ports = append(ports, p)
			}
			sort.Ints(ports)
			for _, p := range ports {
				hosts := byPort[p]
				sort.Strings(hosts)
				hosts = compact(hosts)
				if p == APIPort || p == OTLPPort || p == OTLPGRPCPort || p == PostgresPort {
					return nil, fmt.Errorf("issuer port %d collides with an in-cluster flow", p)
				}
				add(p, "OIDC discovery and JWKS of the tenants' issuers", hosts...)
			}
		}
	}
	return out, nil
}

func compact(s []string) []string {
	var out []string
	for i, v := range s {
		if i == 0 || v != s[i-1] {
			out = append(out, v)
		}
	}
	return out
}
