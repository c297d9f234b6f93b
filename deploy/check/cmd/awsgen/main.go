// Command awsgen writes the AWS half of the EKS deployment to deploy/aws/generated: the
// eksctl ClusterConfig and the CloudFormation templates (audit, platform, one per tenant),
// all derived from the topology. Run it (`make aws-generate`) after editing
// libs/topology/topology.yaml and commit the result; the drift test in package aws fails
// until you do.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/ztbank/ztbank/deploy/check/aws"
	"github.com/ztbank/ztbank/deploy/check/cmd/internal/genfiles"
	"github.com/ztbank/ztbank/libs/topology"
)

func main() {
	if err := run(context.Background(), os.Args, os.Getenv, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintf(os.Stderr, "awsgen: %v\n", err)
		os.Exit(1)
	}
}

func run(_ context.Context, args []string, _ func(string) string, stdout, _ io.Writer) error {
	fs := flag.NewFlagSet(args[0], flag.ContinueOnError)
	out := fs.String("out", "../aws/generated", "directory to write the generated files to")
	topo := fs.String("topology", "", "topology file (default: the one embedded in libs/topology)")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	start := time.Now()
	t, err := topology.Load(*topo)
	if err != nil {
		return fmt.Errorf("load topology: %w", err)
	}
	files, err := aws.Files(t)
	if err != nil {
		return err
	}
	// Stale files (a removed tenant's stack) must not survive a regeneration.
	for _, dir := range []string{"cfn", "eksctl"} {
		if err := os.RemoveAll(filepath.Join(*out, dir)); err != nil {
			return fmt.Errorf("clear %s: %w", dir, err)
		}
	}
	err = genfiles.Write(*out, files, stdout)
	fmt.Fprintf(stdout, "generated %d files in %s\n", len(files), time.Since(start).Round(time.Millisecond))
	return err
}
