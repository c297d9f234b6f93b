// Package cli holds what every ztbank binary's main does, so that main is one line and all
// the work is in run (STYLE.md). It is its own package, with nothing but the standard
// library, so a small tool (an image entrypoint, a probe) does not link the service runtime
// to get it; libs/server.Main is this for the services.
package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// RunFunc is a binary's run function (STYLE.md): all that main does, callable from tests
// with their own arguments, environment, output and a cancellable context.
type RunFunc func(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error

// Main runs run under a context that SIGINT and SIGTERM cancel (so a service drains and a
// tool stops what it started), and on failure prints "name: error" and exits 1.
func Main(name string, run RunFunc) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args, os.Getenv, os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		os.Exit(1)
	}
}
