package apiserver

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/ztbank/ztbank/deploy/check/manifest"
)

// CRDSource is one upstream module whose zip carries CRD files. The versions are pinned in
// tools/kube/crds/go.mod (hashes in its go.sum); the files are read from the module cache.
type CRDSource struct {
	Module string
	// Globs are relative to the module's root.
	Globs []string
}

// UpstreamCRDSources are the real CRDs installed before a rendering is applied.
var UpstreamCRDSources = []CRDSource{
	{Module: "istio.io/istio", Globs: []string{"manifests/charts/base/files/crd-all.gen.yaml"}},
	{Module: "github.com/spiffe/spire-controller-manager", Globs: []string{"config/crd/bases/spire.spiffe.io_*.yaml"}},
	{Module: "github.com/external-secrets/external-secrets", Globs: []string{"config/crds/bases/external-secrets.io_*.yaml"}},
	// The three monitoring.coreos.com kinds the overlays ship for kube-prometheus-stack (ADR
	// 0975); the operator's other CRDs (Prometheus, Alertmanager, ...) belong to the chart.
	{Module: "github.com/prometheus-operator/prometheus-operator", Globs: []string{
		"example/prometheus-operator-crd/monitoring.coreos.com_servicemonitors.yaml",
		"example/prometheus-operator-crd/monitoring.coreos.com_podmonitors.yaml",
		"example/prometheus-operator-crd/monitoring.coreos.com_prometheusrules.yaml",
	}},
}

// ModuleDir returns the module cache directory of module at the version pinned in the Go module
// at pinDir (tools/kube/crds), downloading it through GOPROXY only if it is not cached yet
// (`make kube-tools` pre-downloads it, so the test itself reads the cache).
func ModuleDir(ctx context.Context, pinDir, module string) (string, error) {
	cmd := exec.CommandContext(ctx, "go", "mod", "download", "-json", module)
	cmd.Dir = pinDir
	// -mod=readonly: the pins and hashes in tools/kube/crds are used as committed, never rewritten.
	cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=readonly")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	var info struct {
		Path, Version, Dir, Error string
	}
	if jerr := json.Unmarshal(out, &info); jerr != nil && err == nil {
		err = jerr
	}
	if err != nil || info.Error != "" || info.Dir == "" {
		return "", fmt.Errorf("go mod download -json %s (in %s): %v %s %s", module, pinDir, err, info.Error, stderr.String())
	}
	return info.Dir, nil
}

// LoadCRDs reads every CRD of the sources from the module cache. Each file must hold only
// CustomResourceDefinitions, so a glob that catches something else fails loudly.
func LoadCRDs(ctx context.Context, pinDir string, sources []CRDSource) ([]manifest.Object, error) {
	var out []manifest.Object
	for _, src := range sources {
		dir, err := ModuleDir(ctx, pinDir, src.Module)
		if err != nil {
			return nil, err
		}
		n := 0
		for _, g := range src.Globs {
			files, err := filepath.Glob(filepath.Join(dir, g))
			if err != nil {
				return nil, fmt.Errorf("%s: %w", g, err)
			}
			for _, f := range files {
				b, err := os.ReadFile(f)
				if err != nil {
					return nil, fmt.Errorf("read CRD file: %w", err)
				}
				objs, err := manifest.Parse(b)
				if err != nil {
					return nil, fmt.Errorf("%s: %w", f, err)
				}
				for _, o := range objs {
					if o.Kind != "CustomResourceDefinition" {
						return nil, fmt.Errorf("%s: %s is not a CRD", f, o.ID())
					}
					out = append(out, o)
					n++
				}
			}
		}
		if n == 0 {
			return nil, fmt.Errorf("%s: no CRDs under %s", src.Module, strings.Join(src.Globs, ", "))
		}
	}
	return out, nil
}

// StandInLabel marks every CRD this package made up because the real one cannot be had.
const StandInLabel = "ztbank.io/stand-in-crd"

// EmissaryStandInCRDs are STAND-INS for Emissary-ingress's getambassador.io CRDs: Emissary is
// not served by the Go module proxy (and its CRDs come from its Helm chart / release YAML), so
// the real schemas cannot be installed here. Each stand-in serves v3alpha1 with an open spec
// (x-kubernetes-preserve-unknown-fields): the API server checks metadata and that spec is an
// object, nothing more. The Emissary objects' fields are checked offline instead, by
// deploy/check/manifest's strict Go types.
func EmissaryStandInCRDs() ([]manifest.Object, error) {
	var out []manifest.Object
	for _, kind := range []string{"Mapping", "Listener", "Host", "TLSContext", "AuthService"} {
		plural := strings.ToLower(kind) + "s"
		crd := map[string]any{
			"apiVersion": "apiextensions.k8s.io/v1",
			"kind":       "CustomResourceDefinition",
			"metadata": map[string]any{
				"name":   plural + ".getambassador.io",
				"labels": map[string]any{StandInLabel: "true"},
				"annotations": map[string]any{
					"ztbank.io/stand-in-for": "Emissary-ingress " + kind + " CRD (not obtainable offline)",
				},
			},
			"spec": map[string]any{
				"group": "getambassador.io",
				"scope": "Namespaced",
				"names": map[string]any{
					"kind": kind, "listKind": kind + "List", "plural": plural, "singular": strings.ToLower(kind),
				},
				"versions": []any{map[string]any{
					"name": "v3alpha1", "served": true, "storage": true,
					"schema": map[string]any{"openAPIV3Schema": map[string]any{
						"type": "object",
						"properties": map[string]any{
							"spec": map[string]any{"type": "object", "x-kubernetes-preserve-unknown-fields": true},
						},
					}},
				}},
			},
		}
		j, err := json.Marshal(crd)
		if err != nil {
			return nil, fmt.Errorf("stand-in CRD %s: %w", kind, err)
		}
		o, err := manifest.FromJSON(j)
		if err != nil {
			return nil, err
		}
		out = append(out, o)
	}
	return out, nil
}
