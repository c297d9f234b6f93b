// Command composeinit prepares and tends the docker-compose stack, one subcommand per
// one-shot or long-running container, all derived from the topology:
//
//	composeinit secrets -out DIR         dev CA, edge and PostgreSQL certificates, superuser passwords
//	composeinit spire -socket S -out DIR trust bundle, join token and one entry per workload
//	composeinit rotate -tenant T ...     creates and rotates the tenant's 15-minute service passwords
//	composeinit fresh FILE... -max-age D healthcheck: every file exists and is younger than D
//	composeinit dial -addr HOST:PORT     exits 0 when a TCP connection opens (isolation probes)
//	composeinit stack -out stack.json    on the host: describes the running stack for the suites
//
// Secrets and keys are generated inside the containers at start-up, into named volumes,
// and never come from the repository.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/ztbank/ztbank/libs/cli"
	"github.com/ztbank/ztbank/libs/topology"
)

func main() { cli.Main("composeinit", run) }

const usage = "usage: composeinit secrets|spire|rotate|fresh|dial|stack [flags] (see -h of each)"

// errUsage marks errors whose fix is reading the usage text.
var errUsage = errors.New("usage")

// run dispatches to a subcommand; tests call it directly.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) < 2 {
		return fmt.Errorf("%w: %s", errUsage, usage)
	}
	rest := args[2:]
	switch args[1] {
	case "secrets":
		return secrets(ctx, rest, getenv, stdout, stderr)
	case "spire":
		return spire(ctx, rest, getenv, stdout, stderr)
	case "rotate":
		return rotate(ctx, rest, getenv, stdout, stderr)
	case "fresh":
		return fresh(rest, stderr)
	case "dial":
		return dial(ctx, rest, stdout, stderr)
	case "stack":
		return stackInfo(ctx, rest, getenv, stdout, stderr)
	default:
		return fmt.Errorf("%w: unknown subcommand %q; %s", errUsage, args[1], usage)
	}
}

// parseWithTopology adds the -topology flag the topology-driven subcommands take to fs,
// parses args and loads the topology it names.
func parseWithTopology(fs *flag.FlagSet, args []string, getenv func(string) string) (*topology.Topology, error) {
	topoPath := fs.String("topology", getenv("ZTBANK_TOPOLOGY"), "topology `file` (default: the embedded one)")
	if err := fs.Parse(args); err != nil {
		return nil, fmt.Errorf("%w: %w", errUsage, err)
	}
	return topology.Load(*topoPath)
}

func envOr(getenv func(string) string, key, def string) string {
	if v := strings.TrimSpace(getenv(key)); v != "" {
		return v
	}
	return def
}
