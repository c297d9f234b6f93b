package topogen_test

import (
	"encoding/json"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/ztbank/ztbank/deploy/check/manifest"
	"github.com/ztbank/ztbank/deploy/check/topogen"
	"github.com/ztbank/ztbank/libs/topology"
	"sigs.k8s.io/yaml"
)

var (
	obsDir      = filepath.Join("..", "..", "observability")
	overlaysDir = filepath.Join("..", "..", "k8s", "overlays")
	overlays    = []string{"kind", "eks"}
)

// TestObservabilityFilesCurrent fails when the alert rules or an overlay's issuers changed
// but `make generate` was not run.
func TestObservabilityFilesCurrent(t *testing.T) {
	alerts, err := os.ReadFile(filepath.Join(obsDir, "prometheus", "alerts.yml"))
	if err != nil {
		t.Fatal(err)
	}
	want, err := topogen.PrometheusRule(alerts)
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(obsDir, topogen.PrometheusRuleFile))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(string(want), string(got)); diff != "" {
		t.Errorf("%s drifted from prometheus/alerts.yml; run make generate (-want +got):\n%s", topogen.PrometheusRuleFile, diff)
	}
	for _, o := range overlays {
		want, err := topogen.FalcoFileForOverlay(topology.Default(), filepath.Join(overlaysDir, o), o)
		if err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(filepath.Join(obsDir, "falco", topogen.FalcoOutboundFile(o)))
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(string(want), string(got)); diff != "" {
			t.Errorf("falco/%s drifted; run make generate (-want +got):\n%s", topogen.FalcoOutboundFile(o), diff)
		}
	}
}

type np struct {
	Metadata struct{ Namespace, Name string }
	Spec     struct {
		PodSelector struct {
			MatchLabels map[string]string `json:"matchLabels"`
		} `json:"podSelector"`
		PolicyTypes []string `json:"policyTypes"`
		Ingress     []rule   `json:"ingress"`
		Egress      []rule   `json:"egress"`
	}
}

type rule struct {
	Ports []struct {
		Port int `json:"port"`
	} `json:"ports"`
	From []peer `json:"from"`
	To   []peer `json:"to"`
}

type peer struct {
	NamespaceSelector *struct {
		MatchLabels map[string]string `json:"matchLabels"`
	} `json:"namespaceSelector"`
	PodSelector *struct {
		MatchLabels map[string]string `json:"matchLabels"`
	} `json:"podSelector"`
}

func selects(sel, labels map[string]string) bool {
	for k, v := range sel {
		if labels[k] != v {
			return false
		}
	}
	return true
}

func policies(t *testing.T, objs []manifest.Object) []np {
	t.Helper()
	var out []np
	for _, o := range objs {
		if o.Kind != "NetworkPolicy" {
			continue
		}
		var p np
		if err := json.Unmarshal(o.JSON, &p); err != nil {
			t.Fatal(err)
		}
		out = append(out, p)
	}
	return out
}

// egressPorts is every port some NetworkPolicy lets a pod with labels in ns open.
func egressPorts(nps []np, ns string, labels map[string]string) []int {
	set := map[int]bool{}
	for _, p := range nps {
		if p.Metadata.Namespace != ns || !selects(p.Spec.PodSelector.MatchLabels, labels) {
			continue
		}
		for _, r := range p.Spec.Egress {
			for _, port := range r.Ports {
				set[port.Port] = true
			}
		}
	}
	var out []int
	for p := range set {
		out = append(out, p)
	}
	sort.Ints(out)
	return out
}

// TestFalcoAllowlistMatchesNetworkPolicies: for every ztbank pod of each overlay, the ports the
// Falco allowlist admits are exactly the ports its NetworkPolicies let it open (plus istiod,
// which the namespace-wide policy admits too), and the edge's issuer hosts are the overlay's.
// Two layers derived from one topology must agree, so one cannot silently drift.
func TestFalcoAllowlistMatchesNetworkPolicies(t *testing.T) {
	tp := topology.Default()
	for _, o := range overlays {
		t.Run(o, func(t *testing.T) {
			objs, err := manifest.Build(filepath.Join(overlaysDir, o))
			if err != nil {
				t.Fatal(err)
			}
			issuers, err := topogen.EdgeIssuers(tp, objs)
			if err != nil {
				t.Fatal(err)
			}
			if len(issuers) == 0 {
				t.Fatal("no edge issuers found")
			}
			flows, err := topogen.OutboundFlows(tp, issuers)
			if err != nil {
				t.Fatal(err)
			}
			nps := policies(t, objs)
			checked := 0
			for _, w := range tp.Workloads {
				if w.External {
					continue
				}
				var falco []int
				var hosts []string
				for _, f := range flows {
					if f.Namespace == w.Namespace && f.App == w.Service {
						falco = append(falco, f.Port)
						for _, h := range f.Hosts {
							hosts = append(hosts, h+":"+strconv.Itoa(f.Port))
						}
					}
				}
				sort.Ints(falco)
				labels := map[string]string{"app.kubernetes.io/name": w.Service, "app.kubernetes.io/part-of": "ztbank"}
				if diff := cmp.Diff(egressPorts(nps, w.Namespace, labels), falco); diff != "" {
					t.Errorf("%s: NetworkPolicy egress ports vs Falco allowlist (-netpol +falco):\n%s", w.Name, diff)
				}
				if w.Public != "" {
					sort.Strings(hosts)
					if diff := cmp.Diff(issuers, hosts); diff != "" {
						t.Errorf("edge issuers vs Falco hosts (-issuers +falco):\n%s", diff)
					}
				}
				checked++
			}
			if checked == 0 {
				t.Fatal("no workloads checked")
			}
		})
	}
}

// TestOutboundFlowsRefuseUndeclared keeps the allowlist honest: a workload gets the database
// port only with a database role, and issuer ports that would widen an in-cluster flow fail.
func TestOutboundFlowsRefuseUndeclared(t *testing.T) {
	tp := topology.Default()
	flows, err := topogen.OutboundFlows(tp, []string{"idp.example:443"})
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range tp.Workloads {
		has5432 := slices.ContainsFunc(flows, func(f topogen.Flow) bool {
			return f.Namespace == w.Namespace && f.App == w.Service && f.Port == topogen.PostgresPort
		})
		if has5432 != (w.DBRole != "") {
			t.Errorf("%s: database flow %t, database role %q", w.Name, has5432, w.DBRole)
		}
		has443 := slices.ContainsFunc(flows, func(f topogen.Flow) bool {
			return f.Namespace == w.Namespace && f.App == w.Service && f.Port == 443
		})
		if has443 != (w.Public != "") {
			t.Errorf("%s: issuer flow %t, public edge %t", w.Name, has443, w.Public != "")
		}
	}
	if _, err := topogen.OutboundFlows(tp, []string{"idp.example:5432"}); err == nil {
		t.Error("an issuer on the database port was accepted")
	}
	if _, err := topogen.OutboundFlows(tp, []string{"idp.example"}); err == nil {
		t.Error("an issuer without a port was accepted")
	}
}

// TestCollectorFlows: the collector's NetworkPolicy admits OTLP from every ztbank namespace
// and lets it reach exactly the ports its exporters dial (Jaeger, Loki) plus DNS; every
// namespace's OTLP egress and the runtime ConfigMap's endpoint point at the collector.
func TestCollectorFlows(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(obsDir, "otelcol", "config.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		Exporters map[string]struct {
			Endpoint string `json:"endpoint"`
		} `json:"exporters"`
	}
	if err := yaml.Unmarshal(b, &cfg); err != nil {
		t.Fatal(err)
	}
	var exportPorts []int
	for name, e := range cfg.Exporters {
		hostport := e.Endpoint
		if u, err := url.Parse(e.Endpoint); err == nil && u.Host != "" {
			hostport = u.Host
		}
		host, port, err := net.SplitHostPort(hostport)
		if err != nil {
			t.Fatalf("exporter %s: endpoint %q: %v", name, e.Endpoint, err)
		}
		if !strings.HasSuffix(host, "."+topogen.OTLPNamespace+".svc.cluster.local") {
			t.Errorf("exporter %s dials %s, outside namespace %s", name, host, topogen.OTLPNamespace)
		}
		p, _ := strconv.Atoi(port)
		exportPorts = append(exportPorts, p)
	}
	exportPorts = append(exportPorts, 53)
	sort.Ints(exportPorts)

	tp := topology.Default()
	for _, o := range overlays {
		t.Run(o, func(t *testing.T) {
			objs, err := manifest.Build(filepath.Join(overlaysDir, o))
			if err != nil {
				t.Fatal(err)
			}
			nps := policies(t, objs)
			collector := map[string]string{"app.kubernetes.io/name": topogen.CollectorName, "app.kubernetes.io/part-of": "ztbank"}
			if diff := cmp.Diff(exportPorts, egressPorts(nps, topogen.OTLPNamespace, collector)); diff != "" {
				t.Errorf("collector egress ports vs exporter ports (-exporters +netpol):\n%s", diff)
			}
			var senders []string
			for _, p := range nps {
				if p.Metadata.Namespace != topogen.OTLPNamespace || !selects(p.Spec.PodSelector.MatchLabels, collector) {
					continue
				}
				for _, r := range p.Spec.Ingress {
					for _, f := range r.From {
						senders = append(senders, f.NamespaceSelector.MatchLabels["kubernetes.io/metadata.name"])
					}
				}
			}
			var want []string
			want = append(want, tp.PlatformNamespace)
			for _, tn := range tp.Tenants {
				want = append(want, tn.Name)
			}
			sort.Strings(want)
			sort.Strings(senders)
			if diff := cmp.Diff(want, senders); diff != "" {
				t.Errorf("namespaces the collector admits OTLP from (-want +got):\n%s", diff)
			}
			for _, ns := range want {
				got := egressPorts(nps, ns, map[string]string{"app.kubernetes.io/name": "any", "app.kubernetes.io/part-of": "ztbank"})
				for _, p := range []int{topogen.OTLPGRPCPort, topogen.OTLPPort} {
					if !slices.Contains(got, p) {
						t.Errorf("namespace %s: pods may not open OTLP port %d", ns, p)
					}
				}
			}
		})
	}
}

// TestServiceMonitorsReachEveryWorkload: in each overlay, every topology workload's Service is
// selected by a ServiceMonitor of its namespace whose endpoint names a port the Service has,
// and the path it scrapes is exactly what that namespace's metrics AuthorizationPolicy opens
// to Prometheus's principal; the scrape NetworkPolicy opens that port.
func TestServiceMonitorsReachEveryWorkload(t *testing.T) {
	tp := topology.Default()
	type sm struct {
		Metadata struct{ Namespace, Name string }
		Spec     struct {
			Selector struct {
				MatchLabels map[string]string `json:"matchLabels"`
			} `json:"selector"`
			Endpoints []struct {
				Port, Path, Scheme string
			} `json:"endpoints"`
		}
	}
	type svc struct {
		Metadata struct {
			Namespace, Name string
			Labels          map[string]string
		}
		Spec struct {
			Ports []struct {
				Name string
				Port int
			}
		}
	}
	type ap struct {
		Metadata struct{ Namespace, Name string }
		Spec     struct {
			Rules []struct {
				From []struct {
					Source struct {
						Principals []string `json:"principals"`
					} `json:"source"`
				} `json:"from"`
				To []struct {
					Operation struct {
						Ports, Methods, Paths []string
					} `json:"operation"`
				} `json:"to"`
			} `json:"rules"`
		}
	}
	for _, o := range overlays {
		t.Run(o, func(t *testing.T) {
			objs, err := manifest.Build(filepath.Join(overlaysDir, o))
			if err != nil {
				t.Fatal(err)
			}
			var sms []sm
			services := map[string]svc{}
			aps := map[string]ap{}
			for _, ob := range objs {
				switch ob.Kind {
				case "ServiceMonitor":
					var s sm
					if err := json.Unmarshal(ob.JSON, &s); err != nil {
						t.Fatal(err)
					}
					sms = append(sms, s)
				case "Service":
					var s svc
					if err := json.Unmarshal(ob.JSON, &s); err != nil {
						t.Fatal(err)
					}
					services[s.Metadata.Namespace+"/"+s.Metadata.Name] = s
				case "AuthorizationPolicy":
					var a ap
					if err := json.Unmarshal(ob.JSON, &a); err != nil {
						t.Fatal(err)
					}
					aps[a.Metadata.Namespace+"/"+a.Metadata.Name] = a
				}
			}
			nps := policies(t, objs)
			for _, w := range tp.Workloads {
				if w.External {
					continue
				}
				s, ok := services[w.Namespace+"/"+w.Service]
				if !ok {
					t.Errorf("%s: no Service", w.Name)
					continue
				}
				found := false
				for _, m := range sms {
					if m.Metadata.Namespace != w.Namespace || !selects(m.Spec.Selector.MatchLabels, s.Metadata.Labels) {
						continue
					}
					for _, e := range m.Spec.Endpoints {
						port := 0
						for _, p := range s.Spec.Ports {
							if p.Name == e.Port {
								port = p.Port
							}
						}
						if port == 0 {
							t.Errorf("%s: ServiceMonitor %s scrapes port %q, which the Service lacks", w.Name, m.Metadata.Name, e.Port)
							continue
						}
						a, ok := aps[w.Namespace+"/allow-metrics-scrape"]
						if !ok {
							t.Fatalf("%s: no metrics AuthorizationPolicy", w.Namespace)
						}
						want := []string{strconv.Itoa(port), "GET", e.Path,
							tp.TrustDomain.Name() + "/ns/" + topogen.MonitoringNamespace + "/sa/" + topogen.PrometheusServiceAccount}
						r := a.Spec.Rules[0]
						got := []string{strings.Join(r.To[0].Operation.Ports, ","), strings.Join(r.To[0].Operation.Methods, ","),
							strings.Join(r.To[0].Operation.Paths, ","), strings.Join(r.From[0].Source.Principals, ",")}
						if diff := cmp.Diff(want, got); diff != "" {
							t.Errorf("%s: scrape vs AuthorizationPolicy (-scrape +policy):\n%s", w.Name, diff)
						}
						if e.Scheme != "https" {
							t.Errorf("%s: scheme %q: the sidecar only takes mTLS", w.Name, e.Scheme)
						}
						opened := false
						for _, p := range nps {
							if p.Metadata.Namespace != w.Namespace || !selects(p.Spec.PodSelector.MatchLabels, s.Metadata.Labels) {
								continue
							}
							for _, r := range p.Spec.Ingress {
								for _, f := range r.From {
									if f.NamespaceSelector != nil && f.NamespaceSelector.MatchLabels["kubernetes.io/metadata.name"] == topogen.MonitoringNamespace {
										for _, pp := range r.Ports {
											opened = opened || pp.Port == port
										}
									}
								}
							}
						}
						if !opened {
							t.Errorf("%s: no NetworkPolicy admits Prometheus to port %d", w.Name, port)
						}
						found = true
					}
				}
				if !found {
					t.Errorf("%s: no ServiceMonitor scrapes it", w.Name)
				}
			}
		})
	}
}
