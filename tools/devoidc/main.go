// Command devoidc runs the local development OIDC provider and fetches tokens from it.
//
//	devoidc serve -listen 127.0.0.1:9900 -state-dir .dev/oidc [-ca-cert ca.pem -ca-key ca-key.pem]
//	devoidc token -stack .dev/stack.json -user alice@bank-a
//	devoidc client-token -stack .dev/stack.json
//	devoidc healthcheck
//
// In a container (docker-compose, kind) serve takes DEVOIDC_LISTEN, DEVOIDC_ISSUER and
// DEVOIDC_STATE_DIR from the environment; an http:// issuer there is the explicit opt-in to
// plain HTTP on a non-loopback address (see devkit/devoidc Config.Insecure). With no command
// at all the binary serves, as a container entrypoint.
//
// serve prints the issuer URL on one line once it accepts connections, writes provider.json
// (the "oidc" object of .dev/stack.json) to its state directory, and runs until interrupted.
// token logs a user in headlessly through the provider's real authorization-code + PKCE
// endpoints and prints the access token on one line; client-token does the same for the
// confidential client with the client-credentials grant. Errors are one line on stderr.
package main

import (
	"context"
	"fmt"
	"io"

	"github.com/ztbank/ztbank/libs/cli"
	"github.com/ztbank/ztbank/tools/devoidc/config"
)

func main() { cli.Main("devoidc", run) }

const usage = "usage: devoidc serve|token|client-token|healthcheck [flags] (see -h of each)"

// run dispatches to a subcommand. Tests call it directly with their own context and writers.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) < 2 {
		args = append(args, "serve")
	}
	switch args[1] {
	case "serve", "healthcheck":
		env, err := config.Load(getenv)
		if err != nil {
			return err
		}
		if args[1] == "healthcheck" {
			return healthcheck(ctx, args[2:], env, stderr)
		}
		return serve(ctx, args[2:], env, stdout, stderr)
	case "token":
		return userToken(ctx, args[2:], getenv, stdout, stderr)
	case "client-token":
		return clientToken(ctx, args[2:], getenv, stdout, stderr)
	default:
		return fmt.Errorf("unknown command %q; %s", args[1], usage)
	}
}
