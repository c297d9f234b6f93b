// Command user is the ztbank user service. Which tenant it serves is configuration
// (ZTBANK_WORKLOAD); the binary is tenant-agnostic.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/ztbank/ztbank/libs/dbcred/fromenv"
	"github.com/ztbank/ztbank/libs/server"
	"github.com/ztbank/ztbank/services/user/store"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args, os.Getenv, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintf(os.Stderr, "user: %v\n", err)
		os.Exit(1)
	}
}

// run wires the service from its environment and blocks until ctx is done. Tests call it
// directly with their own getenv and a cancellable ctx.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) > 1 && args[1] == "healthcheck" {
		return server.Healthcheck(ctx, getenv, "")
	}
	rt, err := server.Setup(ctx, "user", getenv, stderr)
	if err != nil {
		return err
	}
	defer rt.Close()
	peers, err := rt.Peers()
	if err != nil {
		return err
	}
	accounts, err := rt.Peer("bank-a/account")
	if err != nil {
		return err
	}
	pool, err := fromenv.Pool(ctx, getenv)
	if err != nil {
		return err
	}
	defer pool.Close()
	return rt.Serve(ctx, NewServer(rt, peers, store.New(pool), accounts), pool.Ping)
}
