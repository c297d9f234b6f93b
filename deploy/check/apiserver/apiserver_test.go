package apiserver_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/ztbank/ztbank/deploy/check/apiserver"
	"github.com/ztbank/ztbank/deploy/check/manifest"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// root is the repository root, from this package's directory.
var root = filepath.Join("..", "..", "..")

var (
	crdPinDir   = filepath.Join(root, "tools", "kube", "crds")
	istioConfig = filepath.Join(root, "deploy", "istio", "istio-spire.yaml")
)

// Time bounds for a loaded 2-core machine. The API server is ready in seconds when idle;
// CRDs are established in well under a second each.
const (
	readyTimeout = 3 * time.Minute
	crdTimeout   = time.Minute
)

// binDir returns the directory holding kube-apiserver and etcd. `make kube-test` builds them
// and sets KUBE_BIN_DIR; a plain `go test ./...` (make deploy-check) skips these tests rather
// than build Kubernetes on its own.
func binDir(t *testing.T) string {
	t.Helper()
	d := os.Getenv("KUBE_BIN_DIR")
	if d == "" {
		t.Skip("KUBE_BIN_DIR not set: the API-server apply runs under `make kube-test`, which builds kube-apiserver and etcd first")
	}
	return d
}

// startCluster starts etcd + kube-apiserver for one test and installs the upstream CRDs and
// the Emissary stand-ins with their own field manager, so a CRD in a rendering that differs
// from upstream conflicts instead of silently replacing it.
func startCluster(t *testing.T, ctx context.Context) (*apiserver.Cluster, *apiserver.Applier) {
	t.Helper()
	bins := binDir(t)
	start := time.Now()
	c, err := apiserver.Start(ctx, apiserver.Config{BinDir: bins, Dir: t.TempDir(), ReadyTimeout: readyTimeout})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		start := time.Now()
		c.Stop()
		t.Logf("kube-apiserver and etcd stopped in %s", time.Since(start).Round(time.Millisecond))
	})
	t.Logf("etcd + kube-apiserver ready in %s", time.Since(start).Round(time.Millisecond))

	start = time.Now()
	crds, err := apiserver.LoadCRDs(ctx, crdPinDir, apiserver.UpstreamCRDSources)
	if err != nil {
		t.Fatal(err)
	}
	standIns, err := apiserver.EmissaryStandInCRDs()
	if err != nil {
		t.Fatal(err)
	}
	a, err := apiserver.NewApplier(c.Rest)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range append(crds, standIns...) {
		ri, _, err := a.Resource(ctx, o)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ri.Patch(ctx, o.Name, "application/apply-patch+yaml", o.JSON, metav1.PatchOptions{
			FieldManager: "upstream-crds", FieldValidation: metav1.FieldValidationStrict,
		}); err != nil {
			t.Fatalf("install upstream CRD %s: %v", o.Name, err)
		}
	}
	for _, o := range append(crds, standIns...) {
		if err := a.WaitEstablished(ctx, o.Name, crdTimeout); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("installed %d upstream CRDs and %d Emissary stand-in CRDs in %s", len(crds), len(standIns), time.Since(start).Round(time.Millisecond))
	return c, a
}

// TestApplyRenderings applies each overlay to a real API server and creates a Pod from every
// pod template, with Istio's injection where the namespace asks for it. Every object and
// every Pod must be accepted.
func TestApplyRenderings(t *testing.T) {
	binDir(t)
	mesh, err := apiserver.LoadMeshConfig(istioConfig)
	if err != nil {
		t.Fatal(err)
	}
	for _, overlay := range []string{"kind", "eks"} {
		t.Run(overlay, func(t *testing.T) {
			ctx := t.Context()
			objs, err := manifest.Build(filepath.Join(root, "deploy", "k8s", "overlays", overlay))
			if err != nil {
				t.Fatal(err)
			}
			c, a := startCluster(t, ctx)
			// What docs/deploy.md installs before an overlay and the overlay refers to:
			// istioctl creates istio-system (unlabelled), where the eks Ingress points at
			// the ingress gateway.
			prereqs, err := manifest.Parse([]byte("apiVersion: v1\nkind: Namespace\nmetadata: {name: istio-system}\n"))
			if err != nil {
				t.Fatal(err)
			}
			for _, o := range prereqs {
				if _, err := a.Apply(ctx, o); err != nil {
					t.Fatalf("prerequisite %s: %v", o.ID(), err)
				}
			}
			start := time.Now()
			// Webhook configurations go last (see apiserver.Phase), after the idempotence check:
			// spire-controller-manager's fail-closed webhook has no backend here and would
			// refuse the second apply of every ClusterSPIFFEID.
			var rest, webhooks []manifest.Object
			for _, o := range objs {
				if apiserver.Phase(o) == 3 {
					webhooks = append(webhooks, o)
				} else {
					rest = append(rest, o)
				}
			}
			first, err := a.ApplyAll(ctx, rest, crdTimeout)
			if err != nil {
				// Errorf, not Fatalf: the pods below still say which templates are refused.
				t.Errorf("server-side apply of the %s rendering refused objects:\n%v", overlay, err)
			}
			// Applying the same rendering again must change nothing (no resourceVersion moves):
			// a rendering that does not converge would roll workloads on every deploy.
			second, err := a.ApplyAll(ctx, rest, crdTimeout)
			if err != nil {
				t.Errorf("second apply of the %s rendering: %v", overlay, err)
			}
			if diff := cmp.Diff(first, second); diff != "" {
				t.Errorf("second apply changed stored objects (resourceVersion -first +second):\n%s", diff)
			}
			if _, err := a.ApplyAll(ctx, webhooks, crdTimeout); err != nil {
				t.Errorf("server-side apply of the %s rendering's webhook configurations: %v", overlay, err)
			}
			// A warning is a drift too: a deprecated API, or a workload template that its
			// namespace's Pod Security level would refuse as a Pod.
			for _, w := range a.Warnings() {
				t.Errorf("API server warning: %s", w)
			}
			t.Logf("applied %d objects server-side (field manager %s, strict field validation) in %s",
				len(objs), apiserver.FieldManager, time.Since(start).Round(time.Millisecond))

			cs, err := kubernetes.NewForConfig(c.Rest)
			if err != nil {
				t.Fatal(err)
			}
			pods, err := apiserver.PodsFromTemplates(objs)
			if err != nil {
				t.Fatal(err)
			}
			if len(pods) == 0 {
				t.Fatal("the rendering has no pod templates")
			}
			injected, admitted := 0, 0
			for _, tp := range pods {
				ns, err := cs.CoreV1().Namespaces().Get(ctx, tp.Pod.Namespace, metav1.GetOptions{})
				if err != nil {
					t.Fatalf("%s: namespace: %v", tp.Owner, err)
				}
				if apiserver.InjectionWanted(ns.Labels, tp.Pod) {
					apiserver.Inject(tp.Pod, mesh)
					injected++
				}
				if _, err := cs.CoreV1().Pods(tp.Pod.Namespace).Create(ctx, tp.Pod, metav1.CreateOptions{
					FieldValidation: metav1.FieldValidationStrict,
				}); err != nil {
					t.Errorf("%s: pod from its template refused (namespace %s, enforce=%s): %v",
						tp.Owner, ns.Name, ns.Labels["pod-security.kubernetes.io/enforce"], err)
					continue
				}
				admitted++
			}
			t.Logf("admitted %d of %d pods built from pod templates (%d with Istio sidecar injection, CNI=%t)", admitted, len(pods), injected, mesh.CNI)

			t.Run("rbac", func(t *testing.T) { testRBAC(t, cs) })
			if overlay == "kind" {
				t.Run("refusals", func(t *testing.T) { testRefusals(t, c, a, objs) })
			}
		})
	}
}

// testRBAC asks the API server's RBAC authorizer, with the rendering's Roles and bindings
// applied, whether SPIRE's service accounts may do what their components need: everything in
// spire-controller-manager's own ClusterRole and the Lease/Event part of its leader-election
// Role (controller-runtime locks with a Lease, not a ConfigMap), the k8s_psat node attestor's
// and the k8s_configmap bundle publisher's documented permissions, and the agent's.
func testRBAC(t *testing.T, cs kubernetes.Interface) {
	ctx := t.Context()
	const scm = "github.com/spiffe/spire-controller-manager"
	managerRules, err := apiserver.UpstreamRules(ctx, crdPinDir, scm, "config/rbac/role.yaml")
	if err != nil {
		t.Fatal(err)
	}
	electionRules, err := apiserver.UpstreamRules(ctx, crdPinDir, scm, "config/rbac/leader_election_role.yaml")
	if err != nil {
		t.Fatal(err)
	}
	electionRules = slices.DeleteFunc(electionRules, func(r rbacv1.PolicyRule) bool {
		return !slices.Contains(r.Resources, "leases") && !slices.Contains(r.Resources, "events")
	})
	if len(electionRules) == 0 {
		t.Fatal("upstream leader-election Role has no lease or event rules")
	}
	server := apiserver.AccessFromRules(managerRules, "", "spire-controller-manager config/rbac/role.yaml")
	server = append(server, apiserver.AccessFromRules(electionRules, "spire", "spire-controller-manager config/rbac/leader_election_role.yaml")...)
	server = append(server,
		apiserver.Access{Group: "authentication.k8s.io", Resource: "tokenreviews", Verb: "create", Why: "SPIRE k8s_psat node attestor"},
		apiserver.Access{Resource: "pods", Verb: "get", Why: "SPIRE k8s_psat node attestor"},
		apiserver.Access{Resource: "nodes", Verb: "get", Why: "SPIRE k8s_psat node attestor"},
		apiserver.Access{Namespace: "spire", Resource: "configmaps", Name: "spire-bundle", Verb: "get", Why: "SPIRE k8s_configmap bundle publisher"},
		apiserver.Access{Namespace: "spire", Resource: "configmaps", Name: "spire-bundle", Verb: "patch", Why: "SPIRE k8s_configmap bundle publisher"},
	)
	agent := []apiserver.Access{
		{Resource: "pods", Verb: "get", Why: "SPIRE agent k8s workload attestor"},
		{Resource: "nodes", Verb: "get", Why: "SPIRE agent k8s workload attestor"},
		{Resource: "nodes", Subresource: "proxy", Verb: "get", Why: "SPIRE agent k8s workload attestor (kubelet API)"},
	}
	for _, sa := range []struct {
		name string
		want []apiserver.Access
	}{{"spire-server", server}, {"spire-agent", agent}} {
		denied, err := apiserver.Denied(ctx, cs, "spire", sa.name, sa.want)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range denied {
			t.Errorf("spire/%s may not %s", sa.name, d)
		}
	}
	// The check can fail: nothing grants the app service accounts anything.
	denied, err := apiserver.Denied(ctx, cs, "bank-a", "gateway", agent[:1])
	if err != nil {
		t.Fatal(err)
	}
	if len(denied) != 1 {
		t.Errorf("bank-a/gateway may get pods cluster-wide; the RBAC check is not asking the authorizer")
	}
}

// testRefusals proves the cluster above can refuse: without these the acceptance checks
// would pass against an API server that admits anything.
func testRefusals(t *testing.T, c *apiserver.Cluster, a *apiserver.Applier, objs []manifest.Object) {
	ctx := t.Context()
	cs, err := kubernetes.NewForConfig(c.Rest)
	if err != nil {
		t.Fatal(err)
	}
	pods, err := apiserver.PodsFromTemplates(objs)
	if err != nil {
		t.Fatal(err)
	}
	templatePod := func(ns string) *corev1.Pod {
		for _, tp := range pods {
			if tp.Pod.Namespace == ns {
				p := tp.Pod.DeepCopy()
				p.Name += "-negative"
				return p
			}
		}
		t.Fatalf("no pod template in namespace %s", ns)
		return nil
	}

	podCases := []struct {
		name   string
		ns     string
		mutate func(*corev1.Pod)
		want   string // substring of the refusal
	}{
		{
			name: "privileged container in a restricted namespace",
			ns:   "bank-a",
			mutate: func(p *corev1.Pod) {
				p.Spec.Containers[0].SecurityContext.Privileged = ptr(true)
				p.Spec.Containers[0].SecurityContext.AllowPrivilegeEscalation = ptr(true)
			},
			want: `violates PodSecurity "restricted:latest": privileged`,
		},
		{
			// The drift issue 11 names: Istio without its CNI plugin injects istio-init with
			// NET_ADMIN and NET_RAW, which restricted (and baseline) refuse.
			name: "sidecar injection without Istio CNI, restricted namespace",
			ns:   "bank-a",
			mutate: func(p *corev1.Pod) {
				apiserver.Inject(p, apiserver.MeshConfig{CNI: false, NativeSidecars: true})
			},
			want: `unrestricted capabilities (container "istio-init" must not include "NET_ADMIN", "NET_RAW"`,
		},
		{
			name: "sidecar injection without Istio CNI, baseline namespace",
			ns:   "ztbank-system",
			mutate: func(p *corev1.Pod) {
				apiserver.Inject(p, apiserver.MeshConfig{CNI: false, NativeSidecars: true})
			},
			want: `violates PodSecurity "baseline:latest": non-default capabilities (container "istio-init" must not include "NET_ADMIN", "NET_RAW"`,
		},
		{
			name:   "service account that does not exist",
			ns:     "bank-b",
			mutate: func(p *corev1.Pod) { p.Spec.ServiceAccountName = "no-such-account" },
			want:   `serviceaccount "no-such-account" not found`,
		},
	}
	for _, tc := range podCases {
		t.Run(tc.name, func(t *testing.T) {
			p := templatePod(tc.ns)
			tc.mutate(p)
			_, err := cs.CoreV1().Pods(p.Namespace).Create(ctx, p, metav1.CreateOptions{FieldValidation: metav1.FieldValidationStrict})
			if err == nil {
				t.Fatalf("pod %s/%s admitted, want refusal containing %q", p.Namespace, p.Name, tc.want)
			}
			if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("refusal = %v, want Forbidden containing %q", err, tc.want)
			}
		})
	}

	// Strict field validation: a misspelt field in a CRD-backed object (Istio's,
	// spire-controller-manager's and External Secrets' real schemas) and in a built-in object
	// is refused by server-side apply, where the API's default (Warn) would drop the field and
	// store the rest.
	objCases := []struct {
		name, yaml, want string
	}{
		{
			name: "AuthorizationPolicy with principal for principals",
			yaml: `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: misspelt, namespace: bank-a}
spec:
  action: ALLOW
  rules: [{from: [{source: {principal: ["ztbank.local/ns/bank-a/sa/gateway"]}}]}]`,
			want: `.spec.rules[0].from[0].source.principal: field not declared in schema`,
		},
		{
			name: "ClusterSPIFFEID with spiffeIdTemplate for spiffeIDTemplate",
			yaml: `apiVersion: spire.spiffe.io/v1alpha1
kind: ClusterSPIFFEID
metadata: {name: misspelt}
spec:
  spiffeIDTemplate: "spiffe://{{ .TrustDomain }}/x"
  spiffeIdTemplate: "spiffe://{{ .TrustDomain }}/x"`,
			want: `.spec.spiffeIdTemplate: field not declared in schema`,
		},
		{
			name: "ExternalSecret with refreshIntervall",
			yaml: `apiVersion: external-secrets.io/v1
kind: ExternalSecret
metadata: {name: misspelt, namespace: bank-a}
spec:
  refreshIntervall: 1h
  secretStoreRef: {name: aws-parameter-store, kind: SecretStore}
  target: {name: x}`,
			want: `.spec.refreshIntervall: field not declared in schema`,
		},
		{
			// The Prometheus Operator's real schema (ADR 0975): a misspelt scrape field would
			// otherwise leave the default scheme (http), which the sidecar refuses.
			name: "ServiceMonitor with schema for scheme",
			yaml: `apiVersion: monitoring.coreos.com/v1
kind: ServiceMonitor
metadata: {name: misspelt, namespace: bank-a}
spec:
  selector: {matchLabels: {app.kubernetes.io/part-of: ztbank}}
  endpoints: [{port: http-health, schema: https}]`,
			want: `.spec.endpoints[0].schema: field not declared in schema`,
		},
		{
			name: "PrometheusRule with expression for expr",
			yaml: `apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata: {name: misspelt, namespace: observability}
spec:
  groups: [{name: g, rules: [{alert: A, expression: "up == 0"}]}]`,
			want: `.spec.groups[name="g"].rules[0].expression: field not declared in schema`,
		},
		{
			name: "Deployment with replica for replicas",
			yaml: `apiVersion: apps/v1
kind: Deployment
metadata: {name: misspelt, namespace: bank-a}
spec:
  replica: 2
  selector: {matchLabels: {a: b}}
  template: {metadata: {labels: {a: b}}, spec: {containers: [{name: c, image: i:1}]}}`,
			want: `.spec.replica: field not declared in schema`,
		},
	}
	for _, tc := range objCases {
		t.Run(tc.name, func(t *testing.T) {
			objs, err := manifest.Parse([]byte(tc.yaml))
			if err != nil || len(objs) != 1 {
				t.Fatalf("parse: %v (%d objects)", err, len(objs))
			}
			_, err = a.Apply(ctx, objs[0])
			if err == nil {
				t.Fatalf("%s accepted, want refusal containing %q", objs[0].ID(), tc.want)
			}
			// kube-apiserver answers a create through server-side apply whose patch does not
			// fit the schema with status 500 and no reason ("failed to create typed patch
			// object"), so the check is on the API status and the field named in it.
			if codeOf(err) == 0 || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("refusal = %v (reason %q, code %d), want an API status naming %q", err, apierrors.ReasonForError(err), codeOf(err), tc.want)
			}
		})
	}

	// The warnings the apply phase fails on are really collected: a Deployment whose template
	// restricted Pod Security would refuse is stored, with a warning.
	t.Run("warning for a workload template Pod Security would refuse", func(t *testing.T) {
		objs, err := manifest.Parse([]byte(`apiVersion: apps/v1
kind: Deployment
metadata: {name: warned, namespace: bank-a}
spec:
  selector: {matchLabels: {a: b}}
  template:
    metadata: {labels: {a: b}}
    spec: {containers: [{name: c, image: i:1, securityContext: {privileged: true}}]}`))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := a.Apply(ctx, objs[0]); err != nil {
			t.Fatal(err)
		}
		const want = `Deployment bank-a/warned: would violate PodSecurity "restricted:latest": privileged`
		if !slices.ContainsFunc(a.Warnings(), func(w string) bool { return strings.HasPrefix(w, want) }) {
			t.Fatalf("warnings %q, want one starting with %q", a.Warnings(), want)
		}
	})
}

// TestVendoredSPIRECRDsMatchUpstream keeps deploy/k8s/base/spire/crds.yaml identical to the
// CRDs of the spire-controller-manager release the server image runs (v0.6.3): a trimmed or
// edited copy would conflict with, or quietly narrow, the real schema.
func TestVendoredSPIRECRDsMatchUpstream(t *testing.T) {
	ctx := t.Context()
	var spire []apiserver.CRDSource
	for _, s := range apiserver.UpstreamCRDSources {
		if s.Module == "github.com/spiffe/spire-controller-manager" {
			spire = append(spire, s)
		}
	}
	upstream, err := apiserver.LoadCRDs(ctx, crdPinDir, spire)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(root, "deploy", "k8s", "base", "spire", "crds.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	vendored, err := manifest.Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	asMaps := func(objs []manifest.Object) map[string]any {
		m := map[string]any{}
		for _, o := range objs {
			v, err := o.Map()
			if err != nil {
				t.Fatal(err)
			}
			m[o.Name] = v
		}
		return m
	}
	if diff := cmp.Diff(asMaps(upstream), asMaps(vendored)); diff != "" {
		t.Errorf("deploy/k8s/base/spire/crds.yaml differs from spire-controller-manager's config/crd/bases (-upstream +vendored):\n%s", diff)
	}
}

// TestInjectionModelMatchesServedTemplate ties apiserver.Inject to Istio's injection template
// at the pinned istio.io/istio version: each security-relevant line the model reproduces must
// still be in the template, in the branch the model assumes.
func TestInjectionModelMatchesServedTemplate(t *testing.T) {
	dir, err := apiserver.ModuleDir(t.Context(), crdPinDir, "istio.io/istio")
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "manifests", "charts", "istio-control", "istio-discovery", "files", "injection-template.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	tmpl := string(b)
	for _, want := range []string{
		// The init container's name and capabilities depend on pilot.cni.enabled.
		"{{ if .Values.pilot.cni.enabled -}}\n  - name: istio-validation\n  {{ else -}}\n  - name: istio-init",
		"    {{- if not .Values.pilot.cni.enabled }}\n        add:\n        - NET_ADMIN\n        - NET_RAW\n    {{- end }}\n        drop:\n        - ALL",
		"    {{- if not .Values.pilot.cni.enabled }}\n      readOnlyRootFilesystem: false\n      runAsGroup: 0\n      runAsNonRoot: false\n      runAsUser: 0\n    {{- else }}\n      readOnlyRootFilesystem: true",
		"      runAsNonRoot: true\n    {{- end }}",
		// The proxy: non-root 1337, no capabilities unless TPROXY or NET_BIND_SERVICE.
		"      runAsNonRoot: true\n      runAsUser: {{ .ProxyUID | default \"1337\" }}\n      runAsGroup: {{ .ProxyGID | default \"1337\" }}",
		"{{ if $nativeSidecar }}restartPolicy: Always{{end}}",
		"allowPrivilegeEscalation: {{ .Values.global.proxy.privileged }}",
	} {
		if !strings.Contains(tmpl, want) {
			t.Errorf("Istio's injection template no longer contains\n%s\n(update apiserver.Inject to match it)", want)
		}
	}
}

// TestMeshConfigChoice pins the Istio settings ADR 0921 chose: CNI on (no privileged init
// container in the pods), an unprivileged proxy.
func TestMeshConfigChoice(t *testing.T) {
	got, err := apiserver.LoadMeshConfig(istioConfig)
	if err != nil {
		t.Fatal(err)
	}
	want := apiserver.MeshConfig{CNI: true, ProxyPrivileged: false, NativeSidecars: true,
		ProxySeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("deploy/istio mesh settings (-want +got):\n%s", diff)
	}
}

// TestPodsFromTemplates checks the pod builder on a StatefulSet and a CronJob.
func TestPodsFromTemplates(t *testing.T) {
	objs, err := manifest.Parse([]byte(`apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db, namespace: ns}
spec:
  serviceName: db
  selector: {matchLabels: {a: b}}
  template:
    metadata: {labels: {a: b}}
    spec: {containers: [{name: c, image: i:1, volumeMounts: [{name: data, mountPath: /d}]}]}
  volumeClaimTemplates: [{metadata: {name: data}, spec: {accessModes: [ReadWriteOnce], resources: {requests: {storage: 1Gi}}}}]
---
apiVersion: batch/v1
kind: CronJob
metadata: {name: rotate, namespace: ns}
spec:
  schedule: "*/10 * * * *"
  jobTemplate: {spec: {template: {spec: {restartPolicy: Never, containers: [{name: r, image: i:1}]}}}}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: skipped, namespace: ns}
`))
	if err != nil {
		t.Fatal(err)
	}
	pods, err := apiserver.PodsFromTemplates(objs)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, p := range pods {
		vols := []string{}
		for _, v := range p.Pod.Spec.Volumes {
			if v.PersistentVolumeClaim != nil {
				vols = append(vols, v.Name+"="+v.PersistentVolumeClaim.ClaimName)
			}
		}
		got = append(got, fmt.Sprintf("%s -> %s/%s %v", p.Owner, p.Pod.Namespace, p.Pod.Name, vols))
	}
	want := []string{
		"StatefulSet ns/db -> ns/statefulset-db [data=data-db-0]",
		"CronJob ns/rotate -> ns/cronjob-rotate []",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("pods (-want +got):\n%s", diff)
	}
}

// TestInjectionWanted covers the injector's opt-in and opt-out rules the test relies on.
func TestInjectionWanted(t *testing.T) {
	enabled := map[string]string{"istio-injection": "enabled"}
	for _, tc := range []struct {
		name string
		ns   map[string]string
		pod  corev1.Pod
		want bool
	}{
		{"namespace opted in", enabled, corev1.Pod{}, true},
		{"namespace not labelled", map[string]string{}, corev1.Pod{}, false},
		{"pod opts out by label", enabled, corev1.Pod{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"sidecar.istio.io/inject": "false"}}}, false},
		{"host network", enabled, corev1.Pod{Spec: corev1.PodSpec{HostNetwork: true}}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := apiserver.InjectionWanted(tc.ns, &tc.pod); got != tc.want {
				t.Errorf("InjectionWanted = %t, want %t", got, tc.want)
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }

func codeOf(err error) int32 {
	var s apierrors.APIStatus
	if errors.As(err, &s) {
		return s.Status().Code
	}
	return 0
}
