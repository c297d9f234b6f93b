// Command otelcol is a minimal OpenTelemetry Collector distribution: the core components the
// cluster collector's configuration names, and nothing else, so the configuration that ships in
// the kind and eks overlays is loaded and validated by the same code that would run it
// (`otelcol validate --config=<file>`; ADR 0975).
package main

import (
	"context"
	"fmt"
	"io"
	"os"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/confmap"
	"go.opentelemetry.io/collector/confmap/provider/fileprovider"
	"go.opentelemetry.io/collector/otelcol"
)

// Version is the collector release the components are pinned at (go.mod).
const Version = "0.165.0"

func main() {
	if err := run(context.Background(), os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "otelcol:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cmd := otelcol.NewCommand(otelcol.CollectorSettings{
		BuildInfo: component.BuildInfo{Command: "otelcol", Description: "ztbank collector (core components)", Version: Version},
		Factories: components,
		// Only file: locations; the shipped config has no ${env:...} references to resolve.
		ConfigProviderSettings: otelcol.ConfigProviderSettings{
			ResolverSettings: confmap.ResolverSettings{
				ProviderFactories: []confmap.ProviderFactory{fileprovider.NewFactory()},
				DefaultScheme:     "file",
			},
		},
	})
	cmd.SetArgs(args)
	cmd.SetOut(stdout)
	cmd.SetErr(stderr)
	cmd.SilenceUsage = true
	return cmd.ExecuteContext(ctx)
}
