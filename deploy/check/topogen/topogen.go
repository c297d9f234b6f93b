// Package topogen renders the Kubernetes, Istio and SPIRE objects that follow from the
// topology: namespaces, ServiceAccounts, Deployments, Services, PodDisruptionBudgets,
// ClusterSPIFFEIDs, PeerAuthentications, RequestAuthentications, AuthorizationPolicies,
// NetworkPolicies and the Emissary Mappings per tenant. The output is committed under
// deploy/k8s/generated and a test fails when it drifts, so a topology edit (a new tenant, a new
// call edge) cannot reach a cluster without the matching enforcement objects.
//
// Objects are built as plain maps rather than typed structs so the YAML carries only the
// fields we set (no "creationTimestamp: null" noise); the strict decode in package manifest is
// what proves every field is real.
package topogen

import (
	"bytes"
	"fmt"
	"sort"
	"strings"

	"github.com/ztbank/ztbank/deploy/check/awsnames"
	"github.com/ztbank/ztbank/libs/topology"
	"sigs.k8s.io/yaml"
)

// Container ports are the same for every workload in Kubernetes, so probes, Services,
// NetworkPolicies and AuthorizationPolicies never need a per-workload lookup. The topology's
// loopback addresses are for the local stack only.
const (
	// APIPort carries the service API. In mesh mode the app serves plain HTTP here and the
	// Istio sidecar terminates mTLS in front of it; in direct mode the app terminates mTLS.
	APIPort = 8443
	// HealthPort serves /healthz, /readyz and /metrics, and on the edge also the internal-JWT
	// JWKS that istiod fetches for RequestAuthentication.
	HealthPort = 9090
	// PublicPort is the edge's client-facing listener: Emissary's ext_authz calls and the
	// reverse-proxied requests arrive here.
	PublicPort = 8080
	// PostgresPort is where DB workloads connect (RDS on EKS, the dev database on kind).
	PostgresPort = 5432
	// OTLPPort and OTLPNamespace locate the cluster's OpenTelemetry collector (OTLP/HTTP),
	// which deploy/observability deploys (ADR 0975).
	OTLPPort      = 4318
	OTLPNamespace = "observability"
)

// IngressServiceAccount is Emissary-ingress's ServiceAccount in the platform namespace. It is
// a deployment fact, not a topology workload: the ingress forwards to the tenant gateways
// after the edge authorised the request, so the gateways' policies must admit it.
const IngressServiceAccount = "emissary-ingress"

// JWKSPath is where the edge serves the internal-JWT key set on its health port.
const JWKSPath = "/.well-known/jwks.json"

// PeerURLTemplate is how a service reaches its peers through the mesh: the peer's Service on
// the API port. Every workload listens there (ZTBANK_LISTEN), so one template serves all.
var PeerURLTemplate = fmt.Sprintf("http://{service}.{namespace}.svc.cluster.local:%d", APIPort)

// Database wiring shared by every overlay: each DB workload takes its whole database
// configuration (ZTBANK_DB_DSN, ZTBANK_DB_AUTH and the method's own variable) from the Secret
// DBSecretName(w), which the kind overlay generates and External Secrets fills on EKS, and
// trusts the database's CA from the tenant's Secret DBCASecret mounted at DBCADir.
const (
	DBCASecret = "ztbank-db-ca"
	DBCAKey    = "ca.pem"
	DBCADir    = "/etc/ztbank/db-ca"
	// DBPasswordDir is where the kind overlay mounts a workload's rotated password.
	DBPasswordDir = "/var/run/secrets/ztbank/db"
	// KindDBHost is the in-cluster PostgreSQL of the kind overlay.
	KindDBHost = "postgres.ztbank-system.svc.cluster.local"
)

// DBSecretName is the Secret holding w's database configuration.
func DBSecretName(w topology.Workload) string { return "ztbank-db-" + w.Service }

// DBPasswordSecretName is the Secret Tilt writes w's rotated password into (kind only).
func DBPasswordSecretName(w topology.Workload) string { return "ztbank-db-password-" + w.Service }

// dsn is w's libpq connection string for host; verify-full against the mounted CA.
func (g gen) dsn(w topology.Workload, host string) string {
	tn, _ := g.t.Tenant(w.Tenant)
	return fmt.Sprintf("host=%s port=%d dbname=%s user=%s sslmode=verify-full sslrootcert=%s/%s",
		host, PostgresPort, tn.Database, w.DBRole, DBCADir, DBCAKey)
}

// WorkloadAnnotation names the topology workload a Deployment runs, so checks can join
// rendered objects back to the topology without parsing names.
const WorkloadAnnotation = "ztbank.io/workload"

// File is one generated manifest file.
type File struct {
	Name string
	Body []byte
}

type obj = map[string]any

// Files renders every generated file for t, in a stable order, plus the kustomization that
// lists them.
func Files(t *topology.Topology) ([]File, error) {
	g := gen{t: t}
	sets := []struct {
		name string
		objs []obj
	}{
		{"namespaces.yaml", g.namespaces()},
		{"serviceaccounts.yaml", g.serviceAccounts()},
		{"workloads.yaml", g.workloads()},
		{"clusterspiffeids.yaml", g.clusterSPIFFEIDs()},
		{"peerauthentications.yaml", g.peerAuthentications()},
		{"requestauthentications.yaml", g.requestAuthentications()},
		{"authorizationpolicies.yaml", g.authorizationPolicies()},
		{"networkpolicies.yaml", g.networkPolicies()},
		{"runtime-config.yaml", g.runtimeConfig()},
		{"routes.yaml", append(g.mappings(), g.virtualService())},
		{"observability.yaml", g.observability()},
	}
	var files []File
	var names []string
	for _, s := range sets {
		b, err := render(s.objs)
		if err != nil {
			return nil, fmt.Errorf("render %s: %w", s.name, err)
		}
		files = append(files, File{Name: s.name, Body: b})
		names = append(names, s.name)
	}
	k, err := kustomization(names)
	if err != nil {
		return nil, fmt.Errorf("render kustomization: %w", err)
	}
	files = append(files, File{Name: "kustomization.yaml", Body: k})
	eks, err := g.eksFiles()
	if err != nil {
		return nil, err
	}
	kind, err := g.kindFiles()
	if err != nil {
		return nil, err
	}
	return append(append(files, eks...), kind...), nil
}

// SecretStoreName is the namespaced External Secrets store in every tenant namespace; the
// tenant's ExternalSecrets read through it and nothing else.
const SecretStoreName = "aws-parameter-store"

// EKSPlaceholder stands for an account-specific value (the region, the account ID in a role
// ARN) that the eks overlay replaces from its settings.env, so no account is committed here.
const EKSPlaceholder = "set-by-eks-overlay"

// eksFiles renders the EKS-only objects into the eks/ subdirectory: per tenant namespace a
// SecretStore that makes External Secrets assume that tenant's reader role (created, with the
// Pod Identity roles and associations of the workloads, by the tenant's CloudFormation stack,
// ADR 0960/0965), and the ExternalSecrets that bring the tenant's RDS endpoint, region and CA
// into its namespace through that store.
func (g gen) eksFiles() ([]File, error) {
	var objs []obj
	for _, tn := range g.t.Tenants {
		objs = append(objs, obj{
			"apiVersion": "external-secrets.io/v1",
			"kind":       "SecretStore",
			"metadata":   obj{"name": SecretStoreName, "namespace": tn.Name},
			"spec": obj{"provider": obj{"aws": obj{
				"service": "ParameterStore",
				"region":  EKSPlaceholder,
				// No auth block: ESO uses its own Pod Identity credentials, whose only
				// permission is to assume the tenant reader roles, and reads as this one.
				"role": awsnames.RoleARN(EKSPlaceholder, awsnames.ESOTenantRoleName(tn.Name)),
			}}},
		})
	}
	storeRef := obj{"name": SecretStoreName, "kind": "SecretStore"}
	for _, tn := range g.t.Tenants {
		// The RDS CA bundle of the tenant's database, which every DB workload verifies it by.
		objs = append(objs, obj{
			"apiVersion": "external-secrets.io/v1",
			"kind":       "ExternalSecret",
			"metadata":   obj{"name": DBCASecret, "namespace": tn.Name},
			"spec": obj{
				"refreshInterval": "1h",
				"secretStoreRef":  storeRef,
				"target":          obj{"name": DBCASecret, "creationPolicy": "Owner"},
				"data": []any{
					obj{"secretKey": DBCAKey, "remoteRef": obj{"key": awsnames.TenantParameterName(tn.Name, awsnames.ParamDBCABundle)}},
				},
			},
		})
	}
	for _, w := range g.t.Workloads {
		if w.DBRole == "" {
			continue
		}
		if _, ok := g.t.Tenant(w.Namespace); !ok || w.Tenant != w.Namespace {
			// Only tenant namespaces have a SecretStore and a reader role.
			return nil, fmt.Errorf("DB workload %s is not in its tenant's namespace; no SecretStore reads for it", w.Name)
		}
		// The endpoint and region come from Parameter Store; the template makes the one DSN the
		// binary reads (database, role and TLS settings are the topology's, not the account's).
		objs = append(objs, obj{
			"apiVersion": "external-secrets.io/v1",
			"kind":       "ExternalSecret",
			"metadata":   obj{"name": DBSecretName(w), "namespace": w.Namespace},
			"spec": obj{
				"refreshInterval": "1h",
				"secretStoreRef":  storeRef,
				"target": obj{
					"name":           DBSecretName(w),
					"creationPolicy": "Owner",
					"template": obj{
						"engineVersion": "v2",
						"data": obj{
							"ZTBANK_DB_DSN":    g.dsn(w, "{{ .host }}"),
							"ZTBANK_DB_AUTH":   "rdsiam",
							"ZTBANK_DB_REGION": "{{ .region }}",
						},
					},
				},
				"data": []any{
					obj{"secretKey": "host", "remoteRef": obj{"key": awsnames.TenantParameterName(w.Tenant, awsnames.ParamDBHost)}},
					obj{"secretKey": "region", "remoteRef": obj{"key": awsnames.TenantParameterName(w.Tenant, awsnames.ParamDBRegion)}},
				},
			},
		})
	}
	es, err := render(objs)
	if err != nil {
		return nil, fmt.Errorf("render external secrets: %w", err)
	}
	k, err := kustomization([]any{"externalsecrets.yaml"})
	if err != nil {
		return nil, fmt.Errorf("render eks kustomization: %w", err)
	}
	return []File{
		{Name: "eks/externalsecrets.yaml", Body: es},
		{Name: "eks/kustomization.yaml", Body: k},
	}, nil
}

// kindFiles renders the kind overlay's database wiring as a kustomize Component: each DB
// workload's configuration Secret (in-cluster PostgreSQL, rotated password files) and a patch
// that mounts the password Secret Tilt keeps rotating.
func (g gen) kindFiles() ([]File, error) {
	var secrets []obj
	var patches []any
	for _, w := range g.t.Workloads {
		if w.DBRole == "" {
			continue
		}
		secrets = append(secrets, obj{
			"apiVersion": "v1",
			"kind":       "Secret",
			"metadata":   meta(DBSecretName(w), w.Namespace, w),
			"type":       "Opaque",
			// Configuration, not credentials: the DSN names no password.
			"stringData": obj{
				"ZTBANK_DB_DSN":           g.dsn(w, KindDBHost),
				"ZTBANK_DB_AUTH":          "passwordfile",
				"ZTBANK_DB_PASSWORD_FILE": DBPasswordDir + "/password",
			},
		})
		patch, err := yaml.Marshal(obj{
			"apiVersion": "apps/v1",
			"kind":       "Deployment",
			"metadata":   obj{"name": w.Service, "namespace": w.Namespace},
			"spec": obj{"template": obj{"spec": obj{
				"containers": []any{obj{
					"name": w.Service,
					"volumeMounts": []any{obj{
						"name": "db-password", "mountPath": DBPasswordDir, "readOnly": true,
					}},
				}},
				"volumes": []any{obj{
					"name":   "db-password",
					"secret": obj{"secretName": DBPasswordSecretName(w), "defaultMode": 0o440},
				}},
			}}},
		})
		if err != nil {
			return nil, err
		}
		patches = append(patches, obj{"patch": string(patch)})
	}
	db, err := render(secrets)
	if err != nil {
		return nil, fmt.Errorf("render kind database secrets: %w", err)
	}
	k, err := render([]obj{{
		"apiVersion": "kustomize.config.k8s.io/v1alpha1",
		"kind":       "Component",
		"resources":  []any{"database.yaml"},
		"patches":    patches,
	}})
	if err != nil {
		return nil, fmt.Errorf("render kind component: %w", err)
	}
	return []File{
		{Name: "kind/database.yaml", Body: db},
		{Name: "kind/kustomization.yaml", Body: k},
	}, nil
}

const header = "# Code generated by deploy/check/cmd/topogen from libs/topology/topology.yaml. DO NOT EDIT.\n"

// kustomization renders the kustomization.yaml that lists resources.
func kustomization(resources any) ([]byte, error) {
	return render([]obj{{
		"apiVersion": "kustomize.config.k8s.io/v1beta1",
		"kind":       "Kustomization",
		"resources":  resources,
	}})
}

func render(objs []obj) ([]byte, error) {
	var buf bytes.Buffer
	buf.WriteString(header)
	for i, o := range objs {
		b, err := yaml.Marshal(o)
		if err != nil {
			return nil, fmt.Errorf("object %d: %w", i, err)
		}
		buf.WriteString("---\n")
		buf.Write(b)
	}
	return buf.Bytes(), nil
}

type gen struct{ t *topology.Topology }

// namespaces lists the platform namespace first, then tenants in file order.
func (g gen) namespaces() []obj {
	out := []obj{namespace(g.t.PlatformNamespace, "")}
	for _, tn := range g.t.Tenants {
		out = append(out, namespace(tn.Name, tn.Name))
	}
	return out
}

func (g gen) allNamespaces() []string {
	ns := []string{g.t.PlatformNamespace}
	for _, tn := range g.t.Tenants {
		ns = append(ns, tn.Name)
	}
	return ns
}

func namespace(name, tenant string) obj {
	labels := obj{
		"istio-injection":                    "enabled",
		"app.kubernetes.io/part-of":          "ztbank",
		"pod-security.kubernetes.io/enforce": "restricted",
	}
	if tenant != "" {
		labels["ztbank.io/tenant"] = tenant
	} else {
		// Emissary's pods are not ours; restricted would reject the upstream chart's defaults.
		labels["pod-security.kubernetes.io/enforce"] = "baseline"
	}
	return obj{
		"apiVersion": "v1",
		"kind":       "Namespace",
		"metadata":   obj{"name": name, "labels": labels},
	}
}

func labels(w topology.Workload) obj {
	l := obj{
		"app.kubernetes.io/name":    w.Service,
		"app.kubernetes.io/part-of": "ztbank",
	}
	if w.Tenant != "" {
		l["ztbank.io/tenant"] = w.Tenant
	}
	return l
}

func selector(w topology.Workload) obj {
	return obj{"app.kubernetes.io/name": w.Service}
}

func meta(name, ns string, w topology.Workload) obj {
	return obj{
		"name":        name,
		"namespace":   ns,
		"labels":      labels(w),
		"annotations": obj{WorkloadAnnotation: w.Name},
	}
}

func (g gen) serviceAccounts() []obj {
	var out []obj
	for _, w := range g.ourWorkloads() {
		out = append(out, obj{
			"apiVersion": "v1",
			"kind":       "ServiceAccount",
			"metadata":   meta(w.Service, w.Namespace, w),
			// Workloads never call the Kubernetes API; their identity is the SVID, not the
			// SA token, so the token is not mounted at all.
			"automountServiceAccountToken": false,
		})
	}
	return out
}

func (g gen) workloads() []obj {
	var out []obj
	for _, w := range g.ourWorkloads() {
		out = append(out, g.deployment(w), g.service(w), pdb(w))
	}
	return out
}

func (g gen) deployment(w topology.Workload) obj {
	ports := []any{
		obj{"name": "http-api", "containerPort": APIPort, "protocol": "TCP"},
		obj{"name": "http-health", "containerPort": HealthPort, "protocol": "TCP"},
	}
	env := []any{
		obj{"name": "ZTBANK_WORKLOAD", "value": w.Name},
		obj{"name": "ZTBANK_LISTEN", "value": fmt.Sprintf(":%d", APIPort)},
		obj{"name": "ZTBANK_HEALTH_LISTEN", "value": fmt.Sprintf(":%d", HealthPort)},
		obj{"name": "OTEL_SERVICE_NAME", "value": w.Service},
		obj{"name": "OTEL_RESOURCE_ATTRIBUTES", "value": "ztbank.workload=" + w.Name},
	}
	if w.Public != "" {
		ports = append(ports, obj{"name": "http-public", "containerPort": PublicPort, "protocol": "TCP"})
		env = append(env, obj{"name": "EDGE_PUBLIC_LISTEN", "value": fmt.Sprintf(":%d", PublicPort)})
	}
	envFrom := []any{obj{"configMapRef": obj{"name": "ztbank-runtime"}}}
	mounts := []any{obj{"name": "tmp", "mountPath": "/tmp"}}
	volumes := []any{obj{"name": "tmp", "emptyDir": obj{"sizeLimit": "16Mi"}}}
	if w.Public != "" {
		// Who issues user tokens differs per overlay (the dev provider on kind, each bank's
		// IdP on EKS, ADR 0933): the overlay provides ztbank-edge.
		envFrom = append(envFrom, obj{"configMapRef": obj{"name": "ztbank-edge"}})
	}
	if w.DBRole != "" {
		// The whole database configuration, made by the overlay (ADR 0932); not optional, so a
		// missing one stops the pod instead of starting a service without its database.
		envFrom = append(envFrom, obj{"secretRef": obj{"name": DBSecretName(w)}})
		mounts = append(mounts, obj{"name": "db-ca", "mountPath": DBCADir, "readOnly": true})
		volumes = append(volumes, obj{"name": "db-ca", "secret": obj{"secretName": DBCASecret, "defaultMode": 0o444}})
	}
	podLabels := labels(w)
	// Opts the pod into SPIRE-issued identities (the ClusterSPIFFEIDs select on it) and into
	// Istio's spire injection template, which mounts the CSI socket into the sidecar.
	podLabels["spiffe.io/spire-managed-identity"] = "true"
	container := obj{
		"name":            w.Service,
		"image":           "ztbank/" + w.Service,
		"imagePullPolicy": "IfNotPresent",
		"env":             env,
		// Transport mode, peer URLs and the OTLP endpoint come from the runtime ConfigMap.
		"envFrom": envFrom,
		"ports":   ports,
		"startupProbe": obj{
			"httpGet":          obj{"path": "/healthz", "port": "http-health"},
			"periodSeconds":    2,
			"failureThreshold": 30,
		},
		"livenessProbe": obj{
			"httpGet":       obj{"path": "/healthz", "port": "http-health"},
			"periodSeconds": 10,
		},
		"readinessProbe": obj{
			"httpGet":       obj{"path": "/readyz", "port": "http-health"},
			"periodSeconds": 5,
		},
		"resources": obj{
			"requests": obj{"cpu": "50m", "memory": "64Mi"},
			"limits":   obj{"cpu": "500m", "memory": "256Mi"},
		},
		"securityContext": containerSecurity(),
		"volumeMounts":    mounts,
	}
	return obj{
		"apiVersion": "apps/v1",
		"kind":       "Deployment",
		"metadata":   meta(w.Service, w.Namespace, w),
		"spec": obj{
			"replicas":             2,
			"revisionHistoryLimit": 3,
			"selector":             obj{"matchLabels": selector(w)},
			"template": obj{
				"metadata": obj{
					"labels": podLabels,
					"annotations": obj{
						WorkloadAnnotation:          w.Name,
						"inject.istio.io/templates": "sidecar,spire",
						"proxy.istio.io/config":     `{"holdApplicationUntilProxyStarts": true}`,
						"prometheus.io/scrape":      "true",
						"prometheus.io/port":        fmt.Sprint(HealthPort),
					},
				},
				"spec": obj{
					"serviceAccountName":           w.Service,
					"automountServiceAccountToken": false,
					"enableServiceLinks":           false,
					"securityContext": obj{
						"runAsNonRoot": true,
						"runAsUser":    65532,
						"runAsGroup":   65532,
						// Secret files (the DB password) are 0440 root:<fsGroup>: readable by
						// this pod's user and nobody else's.
						"fsGroup":        65532,
						"seccompProfile": obj{"type": "RuntimeDefault"},
					},
					"topologySpreadConstraints": []any{obj{
						"maxSkew":           1,
						"topologyKey":       "kubernetes.io/hostname",
						"whenUnsatisfiable": "ScheduleAnyway",
						"labelSelector":     obj{"matchLabels": selector(w)},
					}},
					"containers": []any{container},
					"volumes":    volumes,
				},
			},
		},
	}
}

func containerSecurity() obj {
	return obj{
		"runAsNonRoot":             true,
		"readOnlyRootFilesystem":   true,
		"allowPrivilegeEscalation": false,
		"capabilities":             obj{"drop": []any{"ALL"}},
		"seccompProfile":           obj{"type": "RuntimeDefault"},
	}
}

func (g gen) service(w topology.Workload) obj {
	ports := []any{
		obj{"name": "http-api", "port": APIPort, "targetPort": "http-api", "appProtocol": "http"},
		obj{"name": "http-health", "port": HealthPort, "targetPort": "http-health", "appProtocol": "http"},
	}
	if w.Public != "" {
		ports = append(ports, obj{"name": "http-public", "port": PublicPort, "targetPort": "http-public", "appProtocol": "http"})
	}
	return obj{
		"apiVersion": "v1",
		"kind":       "Service",
		"metadata":   meta(w.Service, w.Namespace, w),
		"spec":       obj{"selector": selector(w), "ports": ports},
	}
}

func pdb(w topology.Workload) obj {
	return obj{
		"apiVersion": "policy/v1",
		"kind":       "PodDisruptionBudget",
		"metadata":   meta(w.Service, w.Namespace, w),
		"spec": obj{
			"minAvailable": 1,
			"selector":     obj{"matchLabels": selector(w)},
		},
	}
}

// clusterSPIFFEIDs renders one ClusterSPIFFEID per workload. Each selects exactly one
// workload's pods (namespace + name label + the opt-in label), so a pod can never match two
// entries and hold two identities.
func (g gen) clusterSPIFFEIDs() []obj {
	var out []obj
	for _, w := range g.ourWorkloads() {
		spec := clusterSPIFFEIDSpec(w.Namespace, w.Service)
		// Istio's SDS asks SPIRE for the bundle named ROOTCA and the SVID named default; the
		// pod's DNS names let clients that verify hostnames still work.
		spec["dnsNameTemplates"] = []any{
			fmt.Sprintf("%s.%s.svc", w.Service, w.Namespace),
			fmt.Sprintf("%s.%s.svc.cluster.local", w.Service, w.Namespace),
		}
		out = append(out, obj{
			"apiVersion": "spire.spiffe.io/v1alpha1",
			"kind":       "ClusterSPIFFEID",
			"metadata": obj{
				"name":        "ztbank-" + strings.ReplaceAll(w.Name, "/", "-"),
				"labels":      labels(w),
				"annotations": obj{WorkloadAnnotation: w.Name},
			},
			"spec": spec,
		})
	}
	return out
}

// clusterSPIFFEIDSpec gives the pods of app in namespace the SPIFFE ID of their
// ServiceAccount. It selects by namespace, name label and the opt-in label, so each entry
// matches one workload's pods only.
func clusterSPIFFEIDSpec(namespace, app string) obj {
	return obj{
		"className":         "ztbank",
		"spiffeIDTemplate":  "spiffe://{{ .TrustDomain }}/ns/{{ .PodMeta.Namespace }}/sa/{{ .PodSpec.ServiceAccountName }}",
		"namespaceSelector": obj{"matchLabels": obj{"kubernetes.io/metadata.name": namespace}},
		"podSelector": obj{"matchLabels": obj{
			"app.kubernetes.io/name":           app,
			"spiffe.io/spire-managed-identity": "true",
		}},
		"ttl": "1h",
	}
}

func (g gen) peerAuthentications() []obj {
	var out []obj
	for _, ns := range g.allNamespaces() {
		out = append(out, obj{
			"apiVersion": "security.istio.io/v1",
			"kind":       "PeerAuthentication",
			"metadata":   obj{"name": "default", "namespace": ns},
			"spec":       obj{"mtls": obj{"mode": "STRICT"}},
		})
	}
	// istiod has no sidecar, so it cannot fetch the JWKS over mTLS: only the edge's health port
	// accepts plaintext, and only the JWKS path is authorised on it.
	for _, w := range g.t.Workloads {
		if w.Public == "" {
			continue
		}
		out = append(out, obj{
			"apiVersion": "security.istio.io/v1",
			"kind":       "PeerAuthentication",
			"metadata":   obj{"name": w.Service + "-jwks", "namespace": w.Namespace},
			"spec": obj{
				"selector":      obj{"matchLabels": selector(w)},
				"mtls":          obj{"mode": "STRICT"},
				"portLevelMtls": obj{fmt.Sprint(HealthPort): obj{"mode": "PERMISSIVE"}},
			},
		})
	}
	return out
}

// issuer is the edge: the only minter of internal JWTs.
func (g gen) issuer() (topology.Workload, bool) {
	for _, w := range g.t.Workloads {
		if w.Public != "" {
			return w, true
		}
	}
	return topology.Workload{}, false
}

func (g gen) requestAuthentications() []obj {
	edge, ok := g.issuer()
	if !ok {
		return nil
	}
	var out []obj
	for _, tn := range g.t.Tenants {
		out = append(out, obj{
			"apiVersion": "security.istio.io/v1",
			"kind":       "RequestAuthentication",
			"metadata":   obj{"name": "internal-jwt", "namespace": tn.Name},
			"spec": obj{
				"jwtRules": []any{obj{
					"issuer":    edge.ID.String(),
					"audiences": []any{tn.Name},
					"jwksUri": fmt.Sprintf("http://%s.%s.svc.cluster.local:%d%s",
						edge.Service, edge.Namespace, HealthPort, JWKSPath),
					// The apps verify the token again (defence in depth), so it must reach them.
					"forwardOriginalToken": true,
				}},
			},
		})
	}
	return out
}

// principal is the Istio form of a SPIFFE ID: the URI without its scheme.
func principal(id string) string { return strings.TrimPrefix(id, "spiffe://") }

func (g gen) ingressPrincipal() string {
	return fmt.Sprintf("%s/ns/%s/sa/%s", g.t.TrustDomain.Name(), g.t.PlatformNamespace, IngressServiceAccount)
}

// authorizationPolicies renders, per namespace, an allow-nothing policy (an ALLOW policy
// without rules denies everything not allowed elsewhere), then one ALLOW per callee naming
// exactly its topology callers. Tenant workloads additionally require a verified internal JWT
// from the edge: RequestAuthentication alone lets token-less requests through.
func (g gen) authorizationPolicies() []obj {
	var out []obj
	for _, ns := range g.allNamespaces() {
		out = append(out, obj{
			"apiVersion": "security.istio.io/v1",
			"kind":       "AuthorizationPolicy",
			"metadata":   obj{"name": "allow-nothing", "namespace": ns},
			"spec":       obj{},
		})
	}
	out = append(out, obj{
		"apiVersion": "security.istio.io/v1",
		"kind":       "AuthorizationPolicy",
		"metadata":   obj{"name": "allow-" + IngressServiceAccount, "namespace": g.t.PlatformNamespace},
		"spec": obj{
			"selector": obj{"matchLabels": obj{"app.kubernetes.io/name": IngressServiceAccount}},
			"action":   "ALLOW",
			"rules": []any{obj{
				"from": []any{obj{"source": obj{"principals": []any{
					g.t.TrustDomain.Name() + "/ns/istio-system/sa/istio-ingressgateway-service-account",
				}}}},
				"to": []any{obj{"operation": obj{"ports": []any{"8080"}}}},
			}},
		},
	})
	edge, hasEdge := g.issuer()
	for _, w := range g.ourWorkloads() {
		var principals []string
		for _, id := range g.t.AllowedCallers(w.Name) {
			principals = append(principals, principal(id.String()))
		}
		sort.Strings(principals)
		var rules []any
		if len(principals) > 0 {
			from := obj{"source": obj{"principals": toAny(principals)}}
			if w.Tenant != "" && hasEdge {
				from["source"].(obj)["requestPrincipals"] = []any{edge.ID.String() + "/*"}
			}
			rules = append(rules, obj{
				"from": []any{from},
				"to":   []any{obj{"operation": obj{"ports": []any{fmt.Sprint(APIPort)}}}},
			})
		}
		if w.Public != "" {
			rules = append(rules,
				obj{
					"from": []any{obj{"source": obj{"principals": []any{g.ingressPrincipal()}}}},
					"to":   []any{obj{"operation": obj{"ports": []any{fmt.Sprint(PublicPort)}}}},
				},
				// The JWKS is public key material; istiod fetches it without a client identity.
				obj{"to": []any{obj{"operation": obj{
					"ports":   []any{fmt.Sprint(HealthPort)},
					"methods": []any{"GET"},
					"paths":   []any{JWKSPath},
				}}}},
				// Tenant workloads verify internal JWTs again and fetch the same key set from
				// the API port (their peer URL for the edge), over mTLS; nothing else there.
				obj{
					"from": []any{obj{"source": obj{"principals": toAny(g.tenantPrincipals())}}},
					"to": []any{obj{"operation": obj{
						"ports":   []any{fmt.Sprint(APIPort)},
						"methods": []any{"GET"},
						"paths":   []any{JWKSPath},
					}}},
				},
			)
		}
		if len(rules) == 0 {
			continue
		}
		out = append(out, obj{
			"apiVersion": "security.istio.io/v1",
			"kind":       "AuthorizationPolicy",
			"metadata":   meta("allow-"+w.Service, w.Namespace, w),
			"spec": obj{
				"selector": obj{"matchLabels": selector(w)},
				"action":   "ALLOW",
				"rules":    rules,
			},
		})
	}
	return out
}

// tenantPrincipals are the Istio principals of every tenant workload, sorted.
func (g gen) tenantPrincipals() []string {
	var out []string
	for _, w := range g.t.Workloads {
		if w.Tenant != "" && !w.External {
			out = append(out, principal(w.ID.String()))
		}
	}
	sort.Strings(out)
	return out
}

func toAny(ss []string) []any {
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}

func peerOf(w topology.Workload) obj {
	return obj{
		"namespaceSelector": obj{"matchLabels": obj{"kubernetes.io/metadata.name": w.Namespace}},
		"podSelector":       obj{"matchLabels": selector(w)},
	}
}

func tcp(port int) []any { return []any{obj{"protocol": "TCP", "port": port}} }

// networkPolicies renders, per namespace, deny-all (ingress and egress) plus DNS and istiod
// egress, then for every topology edge an egress rule on the caller and an ingress rule on the
// callee. NetworkPolicies are the layer-3 twin of the AuthorizationPolicies: either alone
// keeps the topology, so a mistake in one is not a breach.
func (g gen) networkPolicies() []obj {
	var out []obj
	for _, ns := range g.allNamespaces() {
		out = append(out,
			obj{
				"apiVersion": "networking.k8s.io/v1",
				"kind":       "NetworkPolicy",
				"metadata":   obj{"name": "default-deny", "namespace": ns},
				"spec": obj{
					"podSelector": obj{},
					"policyTypes": []any{"Ingress", "Egress"},
				},
			},
			obj{
				"apiVersion": "networking.k8s.io/v1",
				"kind":       "NetworkPolicy",
				"metadata":   obj{"name": "allow-dns-and-istiod", "namespace": ns},
				"spec": obj{
					"podSelector": obj{},
					"policyTypes": []any{"Egress"},
					"egress": []any{
						obj{
							"to": []any{obj{
								"namespaceSelector": obj{"matchLabels": obj{"kubernetes.io/metadata.name": "kube-system"}},
								"podSelector":       obj{"matchLabels": obj{"k8s-app": "kube-dns"}},
							}},
							"ports": []any{obj{"protocol": "UDP", "port": 53}, obj{"protocol": "TCP", "port": 53}},
						},
						obj{
							"to": []any{obj{
								"namespaceSelector": obj{"matchLabels": obj{"kubernetes.io/metadata.name": "istio-system"}},
								"podSelector":       obj{"matchLabels": obj{"app": "istiod"}},
							}},
							"ports": tcp(15012),
						},
					},
				},
			},
			// Spans go to the OpenTelemetry collector (deploy/observability, named by the
			// runtime ConfigMap's OTLP endpoint), and only to its pods: OTLP/HTTP, and gRPC
			// for an SDK configured that way (ADR 0975).
			obj{
				"apiVersion": "networking.k8s.io/v1",
				"kind":       "NetworkPolicy",
				"metadata":   obj{"name": "allow-otlp", "namespace": ns},
				"spec": obj{
					"podSelector": obj{},
					"policyTypes": []any{"Egress"},
					"egress": []any{obj{
						"to": []any{collectorPeer()},
						"ports": []any{
							obj{"protocol": "TCP", "port": OTLPGRPCPort}, obj{"protocol": "TCP", "port": OTLPPort},
						},
					}},
				},
			},
		)
	}
	edge, hasEdge := g.issuer()
	for _, w := range g.ourWorkloads() {
		var ingress, egress []any
		var callers []any
		for _, id := range g.t.AllowedCallers(w.Name) {
			c, _ := g.t.WorkloadByID(id)
			callers = append(callers, peerOf(c))
		}
		if len(callers) > 0 {
			ingress = append(ingress, obj{"from": callers, "ports": tcp(APIPort)})
		}
		var callees []any
		for _, name := range w.Calls {
			c, _ := g.t.Workload(name)
			callees = append(callees, peerOf(c))
		}
		if len(callees) > 0 {
			egress = append(egress, obj{"to": callees, "ports": tcp(APIPort)})
		}
		if w.Public != "" {
			// Emissary asks the edge to authorise; istiod (and every workload) read its JWKS;
			// the edge fetches external OIDC keys from the public internet.
			ingress = append(ingress,
				obj{"from": []any{ingressPeer(g.t.PlatformNamespace)}, "ports": tcp(PublicPort)},
				obj{"from": []any{obj{
					"namespaceSelector": obj{"matchLabels": obj{"kubernetes.io/metadata.name": "istio-system"}},
				}}, "ports": tcp(HealthPort)},
			)
			var tenants []any
			for _, t := range g.t.Workloads {
				if t.Tenant != "" && !t.External {
					tenants = append(tenants, peerOf(t))
				}
			}
			if len(tenants) > 0 {
				ingress = append(ingress, obj{"from": tenants, "ports": tcp(APIPort)})
			}
			egress = append(egress, obj{"ports": tcp(443)})
		} else if hasEdge {
			// The JWKS, from the edge's API port (the peer URL the library builds for it).
			egress = append(egress, obj{"to": []any{peerOf(edge)}, "ports": tcp(APIPort)})
		}
		if w.DBRole != "" {
			// RDS lives outside the cluster; the port is the only thing to pin.
			egress = append(egress, obj{"ports": tcp(PostgresPort)})
		}
		spec := obj{
			"podSelector": obj{"matchLabels": selector(w)},
			"policyTypes": []any{"Ingress", "Egress"},
		}
		if len(ingress) > 0 {
			spec["ingress"] = ingress
		}
		if len(egress) > 0 {
			spec["egress"] = egress
		}
		out = append(out, obj{
			"apiVersion": "networking.k8s.io/v1",
			"kind":       "NetworkPolicy",
			"metadata":   meta(w.Service, w.Namespace, w),
			"spec":       spec,
		})
	}
	if hasEdge {
		// Emissary itself: reach the edge and the tenant gateways, nothing else.
		var to []any
		to = append(to, obj{"to": []any{peerOf(edge)}, "ports": tcp(PublicPort)})
		var gws []any
		for _, w := range g.t.Workloads {
			if w.Service == "gateway" && w.Tenant != "" {
				gws = append(gws, peerOf(w))
			}
		}
		if len(gws) > 0 {
			to = append(to, obj{"to": gws, "ports": tcp(APIPort)})
		}
		out = append(out, obj{
			"apiVersion": "networking.k8s.io/v1",
			"kind":       "NetworkPolicy",
			"metadata":   obj{"name": IngressServiceAccount, "namespace": g.t.PlatformNamespace},
			"spec": obj{
				"podSelector": obj{"matchLabels": obj{"app.kubernetes.io/name": IngressServiceAccount}},
				"policyTypes": []any{"Ingress", "Egress"},
				"ingress":     []any{obj{"ports": tcp(8080)}, obj{"ports": tcp(8443)}},
				"egress":      to,
			},
		})
	}
	return out
}

func ingressPeer(platformNS string) obj {
	return obj{
		"namespaceSelector": obj{"matchLabels": obj{"kubernetes.io/metadata.name": platformNS}},
		"podSelector":       obj{"matchLabels": obj{"app.kubernetes.io/name": IngressServiceAccount}},
	}
}

// mappings renders one Emissary Mapping per tenant: /<tenant>/ goes to that tenant's gateway,
// after the AuthService (the edge) has replaced the external token with the internal JWT.
func (g gen) mappings() []obj {
	var out []obj
	for _, tn := range g.t.Tenants {
		gw, ok := g.t.Workload(tn.Name + "/gateway")
		if !ok {
			continue
		}
		out = append(out, obj{
			"apiVersion": "getambassador.io/v3alpha1",
			"kind":       "Mapping",
			"metadata":   obj{"name": tn.Name, "namespace": g.t.PlatformNamespace},
			"spec": obj{
				"hostname": "*",
				"prefix":   "/" + tn.Name + "/",
				"rewrite":  "/",
				// An explicit port and the Istio TLSContext: Emissary's own outbound calls bypass
				// its sidecar, so it must present the mesh certificate itself under STRICT mTLS.
				"service":    fmt.Sprintf("https://%s.%s:%d", gw.Service, gw.Namespace, APIPort),
				"tls":        "istio-upstream",
				"timeout_ms": 10000,
			},
		})
	}
	return out
}

// runtimeConfig renders the per-namespace ConfigMap every Deployment reads with envFrom. The
// base holds the mesh defaults; overlays patch the DB host, region and auth mode.
func (g gen) runtimeConfig() []obj {
	var out []obj
	for _, ns := range g.allNamespaces() {
		out = append(out, obj{
			"apiVersion": "v1",
			"kind":       "ConfigMap",
			"metadata":   obj{"name": "ztbank-runtime", "namespace": ns},
			"data": obj{
				// Only what every workload reads: the contract test fails on a key a binary ignores.
				"ZTBANK_TRANSPORT_MODE":       "mesh",
				"ZTBANK_PEER_URL_TEMPLATE":    PeerURLTemplate,
				"OTEL_EXPORTER_OTLP_ENDPOINT": fmt.Sprintf("http://otel-collector.%s.svc.cluster.local:%d", OTLPNamespace, OTLPPort),
				"OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
				"OTEL_TRACES_SAMPLER":         "parentbased_traceidratio",
				"OTEL_TRACES_SAMPLER_ARG":     "1.0",
			},
		})
	}
	return out
}

// virtualService routes each tenant's prefix from the Istio ingress gateway to Emissary, which
// authorises through the edge before anything reaches a tenant.
func (g gen) virtualService() obj {
	var routes []any
	for _, tn := range g.t.Tenants {
		routes = append(routes, obj{
			"name":  tn.Name,
			"match": []any{obj{"uri": obj{"prefix": "/" + tn.Name + "/"}}},
			"route": []any{obj{"destination": obj{
				"host": fmt.Sprintf("%s.%s.svc.cluster.local", IngressServiceAccount, g.t.PlatformNamespace),
				"port": obj{"number": 80},
			}}},
			"timeout": "15s",
		})
	}
	return obj{
		"apiVersion": "networking.istio.io/v1",
		"kind":       "VirtualService",
		"metadata":   obj{"name": "ztbank", "namespace": g.t.PlatformNamespace},
		"spec": obj{
			"hosts":    []any{"*"},
			"gateways": []any{"ztbank"},
			"http":     routes,
		},
	}
}
