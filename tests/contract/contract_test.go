package contract

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ztbank/ztbank/libs/topology"
)

// repo is the repository root, relative to this package.
const repo = "../.."

// kindOutside are the Secrets the kind overlay uses that Tilt creates at `tilt up` (random
// admin password, the database CA and server certificate, the rotated per-service passwords),
// with the keys Tilt gives them. TestKindOutsideSecretsComeFromTilt keeps the list honest.
var kindOutside = Outside{
	"ztbank-system/postgres-admin":    {"password"},
	"ztbank-system/postgres-tls":      {"tls.crt", "tls.key"},
	"*/ztbank-db-ca":                  {"ca.pem"},
	"*/ztbank-db-password-*":          {"password"},
	"ztbank-system/edge-signing-keys": {"signing-keys.json"},
}

func renderings(t *testing.T) map[string]*Rendering {
	t.Helper()
	out := map[string]*Rendering{}
	for _, tc := range []struct {
		name          string
		dir           string
		outside       Outside
		prerequisites []string
	}{
		{"kind", "deploy/k8s/overlays/kind", kindOutside, nil},
		// The OpenTelemetry collector is part of both overlays (deploy/observability, ADR
		// 0975), so the OTLP endpoint resolves to its Service like any other address.
		{"eks", "deploy/k8s/overlays/eks", nil, nil},
	} {
		objs, err := Kustomize(filepath.Join(repo, tc.dir))
		if err != nil {
			t.Fatal(err)
		}
		r, err := FromKubernetes(tc.name, objs, tc.outside, t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		r.Prerequisites = tc.prerequisites
		out[tc.name] = r
	}
	r, err := FromCompose(filepath.Join(repo, "docker-compose.yml"), repo, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	out["compose"] = r
	return out
}

// TestDeployContract is the contract itself: every rendering loads and resolves cleanly.
func TestDeployContract(t *testing.T) {
	for name, r := range renderings(t) {
		t.Run(name, func(t *testing.T) {
			ours, edges := 0, 0
			for _, c := range r.Containers {
				if c.Binary != "" {
					ours++
				}
				if c.Binary == "edge" {
					edges++ // compose runs two edge replicas as two services (ADR 0985)
				}
			}
			// Six banking workloads and the edge at least; a rendering that lost its workloads
			// would otherwise pass with nothing to check.
			if ours < 7 {
				t.Fatalf("%s renders %d containers of ours, want at least 7", name, ours)
			}
			for _, p := range Check(r) {
				t.Errorf("%s: %s", name, p)
			}
			// Every call edge, every tenant workload's JWKS fetch, every database and the
			// edge's issuers were examined.
			topo := topology.Default()
			want := map[string]int{"peer ": 0, "JWKS of edge": 0, "database": 0, "OIDC issuer": len(topo.Tenants) * edges}
			for _, w := range topo.Workloads {
				for _, callee := range w.Calls {
					if cw, _ := topo.Workload(callee); !w.External && !cw.External {
						if w.Name == "edge" {
							want["peer "] += edges
						} else {
							want["peer "]++
						}
					}
				}
				if w.Tenant != "" {
					want["JWKS of edge"]++
				}
				if w.DBRole != "" {
					want["database"]++
				}
			}
			if name != "eks" {
				want["OIDC issuer"] = edges // one dev provider for every tenant
			}
			if name != "compose" {
				// Emissary: one Mapping per tenant and the AuthService; Istio: one
				// RequestAuthentication per tenant.
				want["upstream"] = len(topo.Tenants) + 1
				want["JWKS URI"] = len(topo.Tenants)
			}
			for what, n := range want {
				got := 0
				for _, c := range r.Checked {
					if strings.Contains(c, ": "+what) {
						got++
					}
				}
				if got != n {
					t.Errorf("%s: checked %d dials of %q, want %d", name, got, what, n)
				}
			}
		})
	}
}

// TestKindOutsideSecretsComeFromTilt: every Secret the contract lets the kind overlay take
// from outside the rendering is one the Tiltfile creates.
func TestKindOutsideSecretsComeFromTilt(t *testing.T) {
	tilt, err := os.ReadFile(filepath.Join(repo, "Tiltfile"))
	if err != nil {
		t.Fatal(err)
	}
	for pat := range kindOutside {
		_, name, _ := strings.Cut(pat, "/")
		stem := strings.TrimSuffix(name, "*")
		if !strings.Contains(string(tilt), stem) {
			t.Errorf("the contract takes Secret %s from outside the kind rendering, but the Tiltfile never names %q", pat, stem)
		}
	}
}

// TestPlantedDrift plants one drift at a time in the kind rendering and expects the contract
// to report it, so a contract that stopped checking something fails here.
func TestPlantedDrift(t *testing.T) {
	base, err := Kustomize(filepath.Join(repo, "deploy/k8s/overlays/kind"))
	if err != nil {
		t.Fatal(err)
	}
	if r := mustRender(t, base); len(Check(r)) != 0 {
		t.Fatalf("the unmodified kind rendering has problems: %q", Check(r))
	}
	container := func(m map[string]any) map[string]any {
		return dig(m, "spec", "template", "spec", "containers").([]any)[0].(map[string]any)
	}
	for _, tc := range []struct {
		name             string
		kind, ns, object string
		edit             func(m map[string]any) // nil deletes the object
		want             string
	}{
		{"unread variable", "Deployment", "bank-a", "account", func(m map[string]any) {
			c := container(m)
			c["env"] = append(c["env"].([]any), map[string]any{"name": "ZTBANK_DB_HOST", "value": "postgres"})
		}, "sets ZTBANK_DB_HOST, which the account binary does not read"},
		{"peer URL on a port no Service has", "ConfigMap", "bank-a", "ztbank-runtime", func(m map[string]any) {
			m["data"].(map[string]any)["ZTBANK_PEER_URL_TEMPLATE"] = "http://{service}.{namespace}.svc.cluster.local:8080"
		}, "Service bank-a/user has no port 8080"},
		{"Service port renumbered", "Service", "bank-b", "ledger", func(m map[string]any) {
			dig(m, "spec", "ports").([]any)[0].(map[string]any)["port"] = 8444
		}, "Service bank-b/ledger has no port 8443"},
		{"Service selects another workload", "Service", "bank-a", "user", func(m map[string]any) {
			dig(m, "spec", "selector").(map[string]any)["app.kubernetes.io/name"] = "account"
		}, "not workload bank-a/user"},
		{"Service port targets nothing", "Service", "bank-a", "account", func(m map[string]any) {
			dig(m, "spec", "ports").([]any)[0].(map[string]any)["targetPort"] = "http-apj"
		}, "targets http-apj, which no selected container declares"},
		{"missing Secret", "Secret", "bank-a", "ztbank-db-account", nil, "envFrom Secret ztbank-db-account does not exist"},
		{"missing ConfigMap", "ConfigMap", "ztbank-system", "ztbank-edge", nil, "envFrom ConfigMap ztbank-edge does not exist"},
		{"missing ServiceAccount", "ServiceAccount", "bank-a", "user", nil, "ServiceAccount user does not exist"},
		{"missing volume", "Deployment", "bank-b", "payment", func(m map[string]any) {
			spec := dig(m, "spec", "template", "spec").(map[string]any)
			var keep []any
			for _, v := range spec["volumes"].([]any) {
				if v.(map[string]any)["name"] != "db-ca" {
					keep = append(keep, v)
				}
			}
			spec["volumes"] = keep
		}, "volumeMount db-ca at /etc/ztbank/db-ca names no volume"},
		{"path outside every mount", "Secret", "bank-a", "ztbank-db-user", func(m map[string]any) {
			m["stringData"].(map[string]any)["ZTBANK_DB_PASSWORD_FILE"] = "/run/db/password"
		}, "ZTBANK_DB_PASSWORD_FILE=/run/db/password is not under any volume mount"},
		{"loader rejects", "ConfigMap", "bank-b", "ztbank-runtime", func(m map[string]any) {
			m["data"].(map[string]any)["ZTBANK_TRANSPORT_MODE"] = "sidecar"
		}, `loader rejects its environment: ZTBANK_TRANSPORT_MODE: transport mode "sidecar"`},
		{"issuer on a port the provider does not serve", "ConfigMap", "ztbank-system", "ztbank-edge", func(m map[string]any) {
			m["data"].(map[string]any)["ZTBANK_OIDC_ISSUER"] = "http://devoidc.ztbank-system.svc.cluster.local:9999"
		}, "Service ztbank-system/devoidc has no port 9999"},
		{"trace collector that is not deployed", "ConfigMap", "bank-a", "ztbank-runtime", func(m map[string]any) {
			m["data"].(map[string]any)["OTEL_EXPORTER_OTLP_ENDPOINT"] = "http://jaeger.ztbank-system.svc.cluster.local:4318"
		}, "OTLP collector at jaeger.ztbank-system.svc.cluster.local:4318: no Service ztbank-system/jaeger"},
		{"JWKS refused by the edge's AuthorizationPolicy", "AuthorizationPolicy", "ztbank-system", "allow-edge", func(m map[string]any) {
			spec := m["spec"].(map[string]any)
			var keep []any
			for _, rule := range spec["rules"].([]any) {
				if !strings.Contains(fmt.Sprint(rule), "8443") {
					keep = append(keep, rule)
				}
			}
			spec["rules"] = keep
		}, "JWKS of edge at edge.ztbank-system.svc.cluster.local:8443: refused on the way to Deployment ztbank-system/edge container edge: no AuthorizationPolicy rule on the target admits ztbank.local/ns/bank-a/sa/account"},
		{"peer refused by the callee's AuthorizationPolicy", "AuthorizationPolicy", "bank-a", "allow-account", func(m map[string]any) {
			dig(m, "spec", "rules").([]any)[0].(map[string]any)["to"] = []any{map[string]any{"operation": map[string]any{"ports": []any{"9443"}}}}
		}, "peer bank-a/account at account.bank-a.svc.cluster.local:8443: refused on the way to Deployment bank-a/account container account: no AuthorizationPolicy rule"},
		{"egress refused by the caller's NetworkPolicy", "NetworkPolicy", "bank-a", "user", func(m map[string]any) {
			delete(m["spec"].(map[string]any), "egress")
		}, "peer bank-a/account at account.bank-a.svc.cluster.local:8443: refused on the way to Deployment bank-a/account container account: the source's NetworkPolicies allow no egress there"},
		{"ingress refused by the callee's NetworkPolicy", "NetworkPolicy", "bank-b", "ledger", func(m map[string]any) {
			delete(m["spec"].(map[string]any), "ingress")
		}, "peer bank-b/ledger at ledger.bank-b.svc.cluster.local:8443: refused on the way to Deployment bank-b/ledger container ledger: the target's NetworkPolicies admit no ingress from the source"},
		{"issuer refused by the provider's NetworkPolicy", "NetworkPolicy", "ztbank-system", "devoidc", func(m map[string]any) {
			delete(m["spec"].(map[string]any), "ingress")
		}, "OIDC issuer http://devoidc.ztbank-system.svc.cluster.local:9998 at devoidc.ztbank-system.svc.cluster.local:9998: refused on the way to Deployment ztbank-system/devoidc container devoidc: the target's NetworkPolicies admit no ingress"},
		{"Emissary asks the edge on a port it lacks", "AuthService", "ztbank-system", "edge", func(m map[string]any) {
			m["spec"].(map[string]any)["auth_service"] = "https://edge.ztbank-system:8081"
		}, "AuthService ztbank-system/edge: upstream at edge.ztbank-system:8081: Service ztbank-system/edge has no port 8081"},
		{"istiod fetches the JWKS from the API port", "RequestAuthentication", "bank-a", "internal-jwt", func(m map[string]any) {
			rule := dig(m, "spec", "jwtRules").([]any)[0].(map[string]any)
			rule["jwksUri"] = strings.Replace(rule["jwksUri"].(string), ":9090", ":8080", 1)
		}, "JWKS URI at edge.ztbank-system.svc.cluster.local:8080: reaches port 8080 of Deployment ztbank-system/edge container edge, which is not its health listener"},
		{"password file unreadable by the service's user", "Deployment", "bank-a", "user", func(m map[string]any) {
			delete(dig(m, "spec", "template", "spec", "securityContext").(map[string]any), "fsGroup")
		}, "volume db-password at /var/run/secrets/ztbank/db: files of mode 0440 are not readable by uid 65532"},
		{"health port moved but not the probes", "Deployment", "bank-b", "ledger", func(m map[string]any) {
			for _, e := range container(m)["env"].([]any) {
				if e := e.(map[string]any); e["name"] == "ZTBANK_HEALTH_LISTEN" {
					e["value"] = ":9091"
				}
			}
		}, "Deployment bank-b/ledger container ledger: a probe asks port 9090, where the ledger binary does not listen"},
		{"database host without a Service", "Secret", "bank-b", "ztbank-db-ledger", func(m map[string]any) {
			d := m["stringData"].(map[string]any)
			d["ZTBANK_DB_DSN"] = strings.Replace(d["ZTBANK_DB_DSN"].(string), "host=postgres.", "host=pg.", 1)
		}, "no Service ztbank-system/pg in the rendering"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			objs := planted(t, base, tc.kind, tc.ns, tc.object, tc.edit)
			wantProblem(t, Check(mustRender(t, objs)), tc.want)
		})
	}
}

func mustRender(t *testing.T, objs []Object) *Rendering {
	t.Helper()
	r, err := FromKubernetes("kind", objs, kindOutside, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// planted copies objs with one object edited (or, with a nil edit, removed).
func planted(t *testing.T, objs []Object, kind, ns, name string, edit func(map[string]any)) []Object {
	t.Helper()
	var out []Object
	found := false
	for _, o := range objs {
		if o.Kind != kind || o.Metadata.Namespace != ns || o.Metadata.Name != name {
			out = append(out, o)
			continue
		}
		found = true
		if edit == nil {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal(o.JSON, &m); err != nil {
			t.Fatal(err)
		}
		edit(m)
		j, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		o.JSON = j
		out = append(out, o)
	}
	if !found {
		t.Fatalf("no %s %s/%s in the rendering", kind, ns, name)
	}
	return out
}

func dig(m map[string]any, path ...string) any {
	var v any = m
	for _, p := range path {
		v = v.(map[string]any)[p]
	}
	return v
}

// TestPlantedEKSDrift: the External Secrets wiring of the eks rendering.
func TestPlantedEKSDrift(t *testing.T) {
	base, err := Kustomize(filepath.Join(repo, "deploy/k8s/overlays/eks"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name             string
		kind, ns, object string
		edit             func(m map[string]any)
		want             string
	}{
		{"secret store missing", "SecretStore", "bank-a", "aws-parameter-store", nil,
			"ExternalSecret bank-a/ztbank-db-account: reads from SecretStore/bank-a/aws-parameter-store, which does not exist"},
		{"ExternalSecret fills a variable nothing reads", "ExternalSecret", "bank-b", "ztbank-db-ledger", func(m map[string]any) {
			dig(m, "spec", "target", "template", "data").(map[string]any)["ZTBANK_DB_HOST"] = "{{ .host }}"
		}, "Deployment bank-b/ledger container ledger: sets ZTBANK_DB_HOST, which the ledger binary does not read"},
		{"no ExternalSecret for the CA", "ExternalSecret", "bank-a", "ztbank-db-ca", nil,
			"volume db-ca: Secret ztbank-db-ca does not exist"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			objs := planted(t, base, tc.kind, tc.ns, tc.object, tc.edit)
			r, err := FromKubernetes("eks", objs, nil, t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			wantProblem(t, Check(r), tc.want)
		})
	}
}

// TestPlantedComposeDrift does for docker-compose.yml what TestPlantedDrift does for kind.
func TestPlantedComposeDrift(t *testing.T) {
	src, err := os.ReadFile(filepath.Join(repo, "docker-compose.yml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, old, new, want string
	}{
		{"unread variable", "      ZTBANK_WORKLOAD: bank-a/account\n", "      ZTBANK_WORKLOAD: bank-a/account\n      ZTBANK_DB_HOST: postgres.bank-a\n",
			"compose service bank-a-account: sets ZTBANK_DB_HOST, which the account binary does not read"},
		{"peer alias gone", "aliases: [user.bank-a]", "aliases: [usr.bank-a]", "no compose service or alias user.bank-a"},
		{"issuer port the provider does not listen on", `DEVOIDC_LISTEN: ":${ZTBANK_COMPOSE_OIDC_PORT:-19443}"`, `DEVOIDC_LISTEN: ":19444"`, "none of which listens on 19443"},
		{"undeclared volume", "- pw-bank-a-user:/run/ztbank/db:ro", "- pw-bank-a-usr:/run/ztbank/db:ro", "volume pw-bank-a-usr is not declared"},
		{"mesh variables in a direct stack", "  ZTBANK_TRANSPORT_MODE: direct\n", "  ZTBANK_TRANSPORT_MODE: mesh\n", "sets SPIFFE_ENDPOINT_SOCKET, which the gateway binary does not read"},
		{"loader rejects", "      ZTBANK_DB_AUTH: passwordfile\n", "      ZTBANK_DB_AUTH: password\n", `loader rejects its environment: ZTBANK_DB_AUTH "password"`},
		{"CA outside every mount", "      - pki-public:/run/ztbank/pki:ro\n      - pw-bank-b-ledger", "      - pw-bank-b-ledger", "bank-b-ledger: ledger loader rejects its environment: ZTBANK_DB_DSN"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if !strings.Contains(string(src), tc.old) {
				t.Fatalf("docker-compose.yml no longer contains %q; update this case", tc.old)
			}
			path := filepath.Join(t.TempDir(), "docker-compose.yml")
			if err := os.WriteFile(path, []byte(strings.Replace(string(src), tc.old, tc.new, 1)), 0o644); err != nil {
				t.Fatal(err)
			}
			r, err := FromCompose(path, repo, t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			wantProblem(t, Check(r), tc.want)
		})
	}
}

// wantProblem fails t unless one of the problems Check reported contains want: a planted
// drift must be caught, and caught for its own reason.
func wantProblem(t *testing.T, problems []string, want string) {
	t.Helper()
	for _, p := range problems {
		if strings.Contains(p, want) {
			return
		}
	}
	t.Errorf("no problem contains %q; got %q", want, problems)
}
