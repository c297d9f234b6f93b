// Command console serves the ztbank console for a running local stack (`make up`): the
// topology diagram with each workload's routes and permissions, the live stream of
// authorisation decisions, and the isolation matrix of the last e2e run. It listens on
// loopback only, over HTTPS with a certificate from the stack's dev CA, behind a random
// token it prints once. `make dev` starts the same console itself (ADR 0970).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"path/filepath"

	"github.com/ztbank/ztbank/devkit/localspire"
	"github.com/ztbank/ztbank/libs/cli"
	"github.com/ztbank/ztbank/libs/topology"
	"github.com/ztbank/ztbank/tools/console/web"
	"github.com/ztbank/ztbank/tools/devstack/stack"
)

func main() { cli.Main("console", run) }

// DefaultListen is the console's local address. It is not in the topology: the console is a
// developer tool beside the stack, not a workload.
const DefaultListen = "127.0.0.1:8444"

// DefaultJaegerUI is where `make dev OBS=1` serves Jaeger's UI (tools/devstack/obs).
const DefaultJaegerUI = "http://127.0.0.1:16686"

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("console", flag.ContinueOnError)
	fs.SetOutput(stderr)
	root, err := localspire.RepoRoot()
	if err != nil {
		return err
	}
	state := stack.StateDir(root, getenv)
	jaegerDefault := ""
	if getenv("OBS") == "1" {
		jaegerDefault = DefaultJaegerUI
	}
	stackFile := fs.String("stack", filepath.Join(state, "stack.json"), "the running stack's stack.json")
	listen := fs.String("listen", DefaultListen, "loopback address to serve HTTPS on")
	matrix := fs.String("matrix", filepath.Join(root, "docs", "isolation-matrix.html"), "the isolation matrix the e2e suite writes")
	jaeger := fs.String("jaeger", jaegerDefault, "Jaeger UI URL for trace links (default with OBS=1: "+DefaultJaegerUI+")")
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	info, err := stack.ReadInfo(*stackFile)
	if err != nil {
		return fmt.Errorf("no running stack (%v): start one with `make up`", err)
	}
	token, err := web.NewToken()
	if err != nil {
		return err
	}
	cfg := web.FromStack(info, topology.Default(), *matrix, token)
	cfg.JaegerURL = *jaeger
	cfg.OnBadLine = func(path string, err error) { fmt.Fprintf(stderr, "console: %s: %v\n", path, err) }
	srv, err := web.Start(ctx, cfg, *listen, web.DefaultCertFiles(filepath.Dir(*stackFile)))
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "==> console: %s\n    (CA: %s; Ctrl-C stops it)\n", srv.URL, caFile(info))
	return srv.Wait()
}

func caFile(info stack.Info) string {
	if info.Edge != nil {
		return info.Edge.CAFile
	}
	return "the stack's dev CA"
}
