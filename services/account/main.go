// Command account is the ztbank account service. Which tenant it serves is configuration
// (ZTBANK_WORKLOAD); the binary is tenant-agnostic.
package main

import (
	"context"
	"io"
	"net/http"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ztbank/ztbank/libs/dbcred/fromenv"
	"github.com/ztbank/ztbank/libs/server"
	"github.com/ztbank/ztbank/services/account/config"
	"github.com/ztbank/ztbank/services/account/store"
)

func main() { server.Main(config.Service, run) }

// run wires the service from its environment and blocks until ctx is done. Tests call it
// directly with their own getenv and a cancellable ctx.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	return fromenv.LoadAndRun(ctx, config.Load, args, getenv, stderr, func(rt *server.Runtime, peers []*server.Peer, pool *pgxpool.Pool) (http.Handler, error) {
		return NewServer(rt, peers, store.New(pool)), nil
	})
}
