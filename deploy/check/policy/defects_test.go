package policy_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/ztbank/ztbank/deploy/check/manifest"
)

type obj = map[string]any

// dig walks m by keys (strings) and indexes (ints) and returns the value there.
func dig(t *testing.T, m any, path ...any) any {
	t.Helper()
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m = m.(obj)[k]
		case int:
			m = m.([]any)[k]
		}
		if m == nil {
			t.Fatalf("path %v: nothing at %v", path, p)
		}
	}
	return m
}

func container(t *testing.T, o obj) obj {
	return dig(t, o, "spec", "template", "spec", "containers", 0).(obj)
}

// TestKnownDefectsAreCaught introduces one real mistake at a time into the kind overlay's
// rendered objects and checks that the policies report it. Each case is a mistake someone
// could plausibly commit; a policy that silently stopped matching would fail here.
func TestKnownDefectsAreCaught(t *testing.T) {
	c := checker(t)
	base := build(t, "kind")
	for _, tc := range []struct {
		name    string
		kind    string
		ns      string
		objName string
		mutate  func(t *testing.T, o obj) // nil deletes the object
		want    string
	}{
		{
			name: "runAsNonRoot removed", kind: "Deployment", ns: "bank-a", objName: "gateway",
			mutate: func(t *testing.T, o obj) {
				delete(container(t, o)["securityContext"].(obj), "runAsNonRoot")
				delete(dig(t, o, "spec", "template", "spec", "securityContext").(obj), "runAsNonRoot")
			},
			want: "Deployment bank-a/gateway: container gateway must set runAsNonRoot: true",
		},
		{
			name: "writable root filesystem", kind: "Deployment", ns: "bank-b", objName: "ledger",
			mutate: func(t *testing.T, o obj) {
				container(t, o)["securityContext"].(obj)["readOnlyRootFilesystem"] = false
			},
			want: "container ledger must set readOnlyRootFilesystem: true",
		},
		{
			name: "memory limit removed", kind: "Deployment", ns: "bank-b", objName: "payment",
			mutate: func(t *testing.T, o obj) {
				delete(dig(t, container(t, o), "resources", "limits").(obj), "memory")
			},
			want: "container payment has no limits.memory",
		},
		{
			name: "latest tag", kind: "Deployment", ns: "ztbank-system", objName: "edge",
			mutate: func(t *testing.T, o obj) { container(t, o)["image"] = "ztbank/edge:latest" },
			want:   "container edge uses the latest tag",
		},
		{
			name: "hostPath in a workload", kind: "Deployment", ns: "bank-a", objName: "user",
			mutate: func(t *testing.T, o obj) {
				spec := dig(t, o, "spec", "template", "spec").(obj)
				spec["volumes"] = append(spec["volumes"].([]any), obj{"name": "sock", "hostPath": obj{"path": "/run/spire/agent-sockets"}})
			},
			want: "Deployment bank-a/user: hostPath /run/spire/agent-sockets is not allowed",
		},
		{
			name: "SPIRE agent mounts another host path", kind: "DaemonSet", ns: "spire", objName: "spire-agent",
			mutate: func(t *testing.T, o obj) {
				spec := dig(t, o, "spec", "template", "spec").(obj)
				spec["volumes"] = append(spec["volumes"].([]any), obj{"name": "root", "hostPath": obj{"path": "/"}})
			},
			want: "DaemonSet spire/spire-agent: hostPath / is not allowed",
		},
		{
			name: "PeerAuthentication missing in a tenant", kind: "PeerAuthentication", ns: "bank-b", objName: "default",
			want: "namespace bank-b has no namespace-wide STRICT PeerAuthentication",
		},
		{
			name: "PERMISSIVE mTLS in a tenant", kind: "PeerAuthentication", ns: "bank-a", objName: "default",
			mutate: func(t *testing.T, o obj) { dig(t, o, "spec", "mtls").(obj)["mode"] = "PERMISSIVE" },
			want:   "PeerAuthentication bank-a/default sets mTLS PERMISSIVE in a tenant namespace",
		},
		{
			name: "default-deny AuthorizationPolicy missing", kind: "AuthorizationPolicy", ns: "bank-a", objName: "allow-nothing",
			want: "namespace bank-a has no default-deny (allow-nothing) AuthorizationPolicy",
		},
		{
			name: "default-deny NetworkPolicy missing", kind: "NetworkPolicy", ns: "bank-b", objName: "default-deny",
			want: "namespace bank-b has no default-deny NetworkPolicy for ingress and egress",
		},
		{
			name: "extra caller allowed", kind: "AuthorizationPolicy", ns: "bank-a", objName: "allow-account",
			mutate: func(t *testing.T, o obj) {
				src := dig(t, o, "spec", "rules", 0, "from", 0, "source").(obj)
				src["principals"] = append(src["principals"].([]any), "ztbank.local/ns/bank-b/sa/gateway")
			},
			want: "workload bank-a/account: AuthorizationPolicy principals",
		},
		{
			name: "JWT no longer required", kind: "AuthorizationPolicy", ns: "bank-b", objName: "allow-ledger",
			mutate: func(t *testing.T, o obj) {
				delete(dig(t, o, "spec", "rules", 0, "from", 0, "source").(obj), "requestPrincipals")
			},
			want: "AuthorizationPolicy bank-b/allow-ledger: rule admits principals without requestPrincipals",
		},
		{
			// Prometheus's rule may skip the internal JWT only while it opens GET /metrics alone.
			name: "metrics scrape rule opens every path", kind: "AuthorizationPolicy", ns: "bank-a", objName: "allow-metrics-scrape",
			mutate: func(t *testing.T, o obj) {
				delete(dig(t, o, "spec", "rules", 0, "to", 0, "operation").(obj), "paths")
			},
			want: "AuthorizationPolicy bank-a/allow-metrics-scrape: rule admits principals without requestPrincipals",
		},
		{
			name: "metrics scrape rule on the API port", kind: "AuthorizationPolicy", ns: "bank-b", objName: "allow-metrics-scrape",
			mutate: func(t *testing.T, o obj) {
				dig(t, o, "spec", "rules", 0, "to", 0, "operation").(obj)["ports"] = []any{"8443"}
			},
			want: "AuthorizationPolicy bank-b/allow-metrics-scrape: rule admits principals without requestPrincipals",
		},
		{
			name: "wrong ServiceAccount gives a wrong SPIFFE ID", kind: "Deployment", ns: "bank-a", objName: "account",
			mutate: func(t *testing.T, o obj) {
				dig(t, o, "spec", "template", "spec").(obj)["serviceAccountName"] = "user"
			},
			want: "Deployment bank-a/account: SPIFFE ID spiffe://ztbank.local/ns/bank-a/sa/user, topology says spiffe://ztbank.local/ns/bank-a/sa/account",
		},
		{
			name: "ClusterSPIFFEID without the controller's class", kind: "ClusterSPIFFEID", objName: "ztbank-bank-b-ledger",
			mutate: func(t *testing.T, o obj) { delete(o["spec"].(obj), "className") },
			want:   `ClusterSPIFFEID ztbank-bank-b-ledger has className "" but the controller manager only watches "ztbank"`,
		},
		{
			name: "ClusterSPIFFEID missing", kind: "ClusterSPIFFEID", objName: "ztbank-edge",
			want: "Deployment ztbank-system/edge: 0 ClusterSPIFFEIDs select its pods, want exactly 1",
		},
		{
			name: "AuthService fails open", kind: "AuthService", ns: "ztbank-system", objName: "edge",
			mutate: func(t *testing.T, o obj) { o["spec"].(obj)["failure_mode_allow"] = true },
			want:   "AuthService edge must fail closed",
		},
		{
			name: "x-spiffe-id not copied upstream", kind: "AuthService", ns: "ztbank-system", objName: "edge",
			mutate: func(t *testing.T, o obj) {
				o["spec"].(obj)["allowed_authorization_headers"] = []any{"authorization"}
			},
			want: "AuthService edge must copy x-spiffe-id upstream",
		},
		{
			name: "SPIRE agent without hostPID", kind: "DaemonSet", ns: "spire", objName: "spire-agent",
			mutate: func(t *testing.T, o obj) { delete(dig(t, o, "spec", "template", "spec").(obj), "hostPID") },
			want:   "spire-agent DaemonSet must set hostPID: true",
		},
		{
			name: "PodDisruptionBudget missing", kind: "PodDisruptionBudget", ns: "bank-a", objName: "user",
			want: "Deployment bank-a/user: no PodDisruptionBudget selects it",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			objs := mutate(t, base, tc.kind, tc.ns, tc.objName, tc.mutate)
			got, err := c.Check(context.Background(), objs)
			if err != nil {
				t.Fatal(err)
			}
			for _, msg := range got {
				if strings.Contains(msg, tc.want) {
					return
				}
			}
			t.Errorf("no violation containing %q; got %q", tc.want, got)
		})
	}
}

// mutate returns a copy of objs with the named object changed by fn, or removed if fn is nil.
// It fails the test if the object is not there, so a renamed object cannot make a case pass.
func mutate(t *testing.T, objs []manifest.Object, kind, ns, name string, fn func(*testing.T, obj)) []manifest.Object {
	t.Helper()
	var out []manifest.Object
	found := false
	for _, o := range objs {
		if o.Kind != kind || o.Namespace != ns || o.Name != name {
			out = append(out, o)
			continue
		}
		found = true
		if fn == nil {
			continue
		}
		m, err := o.Map()
		if err != nil {
			t.Fatal(err)
		}
		fn(t, m)
		b, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		changed, err := manifest.FromJSON(b)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, changed)
	}
	if !found {
		t.Fatalf("no %s %s/%s in the rendered overlay", kind, ns, name)
	}
	return out
}
