package manifest_test

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ztbank/ztbank/deploy/check/manifest"
)

// root is the repository root, from this package's directory.
var root = filepath.Join("..", "..", "..")

var overlays = []string{"kind", "eks"}

// TestOverlaysDecodeStrictly is the core offline check: each overlay builds with kustomize and
// every object in it decodes into its Go type with unknown fields refused.
func TestOverlaysDecodeStrictly(t *testing.T) {
	for _, name := range overlays {
		t.Run(name, func(t *testing.T) {
			objs, err := manifest.Build(filepath.Join(root, "deploy", "k8s", "overlays", name))
			if err != nil {
				t.Fatal(err)
			}
			if len(objs) == 0 {
				t.Fatal("overlay rendered no objects")
			}
			for _, o := range objs {
				if _, err := manifest.Decode(o); err != nil {
					t.Error(err)
				}
			}
		})
	}
}

// TestDecodeRejectsMistakes feeds each decoder family an object with a known defect and
// expects the decode to fail; without it a decoder that accepts anything would pass the test
// above.
func TestDecodeRejectsMistakes(t *testing.T) {
	for _, tc := range []struct {
		name string
		yaml string
		want error
	}{
		{
			name: "Deployment with misspelt field",
			yaml: `apiVersion: apps/v1
kind: Deployment
metadata: {name: x, namespace: ns}
spec:
  replica: 2
  selector: {matchLabels: {a: b}}
  template: {metadata: {labels: {a: b}}, spec: {containers: [{name: c, image: i:1}]}}`,
			want: manifest.ErrStrict,
		},
		{
			name: "container securityContext with wrong type",
			yaml: `apiVersion: v1
kind: Pod
metadata: {name: x, namespace: ns}
spec:
  containers: [{name: c, image: i:1, securityContext: {runAsNonRoot: "yes"}}]`,
			want: manifest.ErrStrict,
		},
		{
			// Istio's own JSON decoding would accept this: the proof that the spec check works.
			name: "AuthorizationPolicy with misspelt principals",
			yaml: `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: x, namespace: ns}
spec:
  action: ALLOW
  rules: [{from: [{source: {principal: ["ztbank.local/ns/a/sa/b"]}}]}]`,
			want: manifest.ErrStrict,
		},
		{
			name: "PeerAuthentication with misspelt mtls mode key",
			yaml: `apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: ns}
spec:
  mtls: {mod: STRICT}`,
			want: manifest.ErrStrict,
		},
		{
			name: "PeerAuthentication with unknown mode value",
			yaml: `apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: ns}
spec:
  mtls: {mode: STRICKT}`,
			want: manifest.ErrStrict,
		},
		{
			name: "ClusterSPIFFEID with misspelt template",
			yaml: `apiVersion: spire.spiffe.io/v1alpha1
kind: ClusterSPIFFEID
metadata: {name: x}
spec:
  spiffeIdTemplate: "spiffe://{{ .TrustDomain }}/x"`,
			want: manifest.ErrStrict,
		},
		{
			name: "AuthService with misspelt allowed headers",
			yaml: `apiVersion: getambassador.io/v3alpha1
kind: AuthService
metadata: {name: edge, namespace: ns}
spec:
  auth_service: edge:8080
  allowed_authorisation_headers: [x-spiffe-id]`,
			want: manifest.ErrStrict,
		},
		{
			name: "kind nobody checks",
			yaml: `apiVersion: example.com/v1
kind: Widget
metadata: {name: x}`,
			want: manifest.ErrUnknownKind,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			objs, err := manifest.Parse([]byte(tc.yaml))
			if err != nil {
				t.Fatal(err)
			}
			_, err = manifest.Decode(objs[0])
			if !errors.Is(err, tc.want) {
				t.Fatalf("Decode() error = %v, want %v", err, tc.want)
			}
		})
	}
}

// TestDecodeAcceptsTheValidTwin guards the test above against passing for the wrong reason:
// the same objects without their defect decode.
func TestDecodeAcceptsTheValidTwin(t *testing.T) {
	for _, y := range []string{
		`apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: x, namespace: ns}
spec:
  action: ALLOW
  rules: [{from: [{source: {principals: ["ztbank.local/ns/a/sa/b"]}}]}]`,
		`apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: ns}
spec:
  mtls: {mode: STRICT}
  portLevelMtls: {"9090": {mode: PERMISSIVE}}`,
	} {
		objs, err := manifest.Parse([]byte(y))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := manifest.Decode(objs[0]); err != nil {
			t.Errorf("Decode(%s) = %v, want nil", strings.SplitN(y, "\n", 3)[1], err)
		}
	}
}
