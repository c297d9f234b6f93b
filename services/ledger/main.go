// Command ledger is the ztbank ledger service. Which tenant it serves is configuration
// (ZTBANK_WORKLOAD); the binary is tenant-agnostic.
package main

import (
	"context"
	"io"
	"net/http"

	"github.com/ztbank/ztbank/libs/dbcred/fromenv"
	"github.com/ztbank/ztbank/libs/server"
	"github.com/ztbank/ztbank/services/ledger/config"
	"github.com/ztbank/ztbank/services/ledger/store"
)

func main() { server.Main(config.Service, run) }

// run wires the service from its environment and blocks until ctx is done. Tests call it
// directly with their own getenv and a cancellable ctx.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	cfg, err := config.Load(getenv)
	if err != nil {
		return err
	}
	return server.RunConfig(ctx, cfg.Server, args, stderr, func(ctx context.Context, rt *server.Runtime) (http.Handler, []server.ReadyCheck, error) {
		peers, err := rt.Peers()
		if err != nil {
			return nil, nil, err
		}
		pool, ping, err := fromenv.Attach(ctx, rt, cfg.DB)
		if err != nil {
			return nil, nil, err
		}
		return NewServer(rt, peers, store.New(pool)), []server.ReadyCheck{ping}, nil
	})
}
