// Command topogen writes the topology-derived Kubernetes, Istio, SPIRE and Emissary objects to
// deploy/k8s/generated. Run it after editing libs/topology/topology.yaml and commit the result;
// the drift test in package topogen fails until you do.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"

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
	var errs []error
	for _, f := range files {
		p := filepath.Join(*out, filepath.FromSlash(f.Name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			errs = append(errs, fmt.Errorf("create %s: %w", filepath.Dir(p), err))
			continue
		}
		if err := os.WriteFile(p, f.Body, 0o644); err != nil {
			errs = append(errs, fmt.Errorf("write %s: %w", p, err))
			continue
		}
		fmt.Fprintln(stdout, "wrote", p)
	}
	return errors.Join(errs...)
}
