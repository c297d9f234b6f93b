package server

import (
	"context"
	"io"
	"net/http"

	"github.com/ztbank/ztbank/libs/cli"
	"github.com/ztbank/ztbank/libs/envvar"
)

// ReadyCheck is one extra readiness condition, such as a database ping.
type ReadyCheck = func(context.Context) error

// Build assembles a service's API once the runtime is set up. What it opens that needs
// closing it hands to rt.AtClose.
type Build func(ctx context.Context, rt *Runtime) (api http.Handler, ready []ReadyCheck, err error)

// Run is the body of every tenant service's run function: the `healthcheck` subcommand
// (container probes), then Setup, the service's own Build, and Serve until ctx is done.
func Run(ctx context.Context, service string, args []string, getenv func(string) string, stderr io.Writer, build Build) error {
	if len(args) > 1 && args[1] == "healthcheck" {
		return Healthcheck(ctx, getenv, "")
	}
	cfg, err := LoadConfig(service, envvar.NewReader(getenv, TenantVars))
	if err != nil {
		return err
	}
	return RunConfig(ctx, cfg, args, stderr, build)
}

// RunConfig is Run for a configuration the service's own loader has read: the binaries load
// their whole configuration (shared part, database, their own settings) in one place and
// hand the shared part here. The healthcheck subcommand asks the configured health port.
func RunConfig(ctx context.Context, cfg Config, args []string, stderr io.Writer, build Build) error {
	return RunListeners(ctx, cfg, args, stderr, func(ctx context.Context, rt *Runtime) ([]Listener, error) {
		api, ready, err := build(ctx, rt)
		if err != nil {
			return nil, err
		}
		return rt.apiListeners(ctx, api, ready), nil
	})
}

// BuildListeners assembles a binary that serves more than one API listener (the edge: a
// public one for clients and an internal mTLS one), including its health listener.
type BuildListeners func(ctx context.Context, rt *Runtime) ([]Listener, error)

// RunListeners is RunConfig for a binary that builds its own listeners: the same
// healthcheck subcommand, set-up, and serve/drain loop (ServeAll) as every tenant service.
func RunListeners(ctx context.Context, cfg Config, args []string, stderr io.Writer, build BuildListeners) error {
	if len(args) > 1 && args[1] == "healthcheck" {
		return HealthcheckAddr(ctx, cfg.HealthListen)
	}
	rt, err := SetupConfig(ctx, cfg, stderr)
	if err != nil {
		return err
	}
	defer rt.Close()
	listeners, err := build(ctx, rt)
	if err != nil {
		return err
	}
	return rt.ServeAll(ctx, listeners...)
}

// AtClose registers fn to run when the runtime is closed, last registered first.
func (rt *Runtime) AtClose(fn func()) { rt.closers = append(rt.closers, fn) }

// RunFunc is a binary's run function (STYLE.md): all that main does, callable from tests
// with their own arguments, environment, output and a cancellable context.
type RunFunc = cli.RunFunc

// Main is every service's main: run under a context that SIGINT and SIGTERM cancel (so the
// service drains), and on failure print "name: error" as one line and exit 1. The tools
// call cli.Main, the same function, without linking the service runtime.
func Main(name string, run RunFunc) { cli.Main(name, run) }
