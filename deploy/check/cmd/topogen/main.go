// Command topogen writes the topology-derived Kubernetes, Istio, SPIRE and Emissary objects to
// deploy/k8s/generated, and under deploy/observability the PrometheusRule (from the alert rules)
// and each overlay's Falco outbound allowlist (from the topology and the overlay's edge
// issuers). Run it after editing libs/topology/topology.yaml, the alert rules or an overlay's
// issuers and commit the result; the drift tests in package topogen fail until you do.
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/ztbank/ztbank/deploy/check/cmd/internal/genfiles"
	"github.com/ztbank/ztbank/deploy/check/topogen"
	"github.com/ztbank/ztbank/libs/topology"
)

func main() {
	if err := run(os.Args, os.Stdout); err != nil {
		fmt.Fprintf(os.Stderr, "topogen: %v\n", err)
		os.Exit(1)
	}
}

func run(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet(args[0], flag.ContinueOnError)
	out := fs.String("out", "../k8s/generated", "directory to write the generated manifests to")
	topo := fs.String("topology", "", "topology file (default: the one embedded in libs/topology)")
	obsDir := fs.String("obs", "../observability", "deploy/observability: alert rules in, PrometheusRule and Falco allowlists out")
	overlays := fs.String("overlays", "../k8s/overlays", "the kustomize overlays whose edge issuers the Falco allowlists admit")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	t, err := topology.Load(*topo)
	if err != nil {
		return fmt.Errorf("load topology: %w", err)
	}
	files, err := topogen.Files(t)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		return fmt.Errorf("create output dir: %w", err)
	}
	if err := genfiles.Write(*out, files, stdout); err != nil {
		return err
	}
	return writeObservability(t, *obsDir, *overlays, stdout)
}

// writeObservability writes the PrometheusRule first: the overlays include it, and the Falco
// allowlists are read from the built overlays.
func writeObservability(t *topology.Topology, obsDir, overlays string, stdout io.Writer) error {
	alerts, err := os.ReadFile(filepath.Join(obsDir, "prometheus", "alerts.yml"))
	if err != nil {
		return err
	}
	rule, err := topogen.PrometheusRule(alerts)
	if err != nil {
		return err
	}
	p := filepath.Join(obsDir, topogen.PrometheusRuleFile)
	if err := os.WriteFile(p, rule, 0o644); err != nil {
		return fmt.Errorf("write %s: %w", p, err)
	}
	fmt.Fprintln(stdout, "wrote", p)
	for _, overlay := range []string{"kind", "eks"} {
		body, err := topogen.FalcoFileForOverlay(t, filepath.Join(overlays, overlay), overlay)
		if err != nil {
			return err
		}
		p := filepath.Join(obsDir, "falco", topogen.FalcoOutboundFile(overlay))
		if err := os.WriteFile(p, body, 0o644); err != nil {
			return fmt.Errorf("write %s: %w", p, err)
		}
		fmt.Fprintln(stdout, "wrote", p)
	}
	return nil
}
