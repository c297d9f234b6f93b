// Command payment is the ztbank payment service. Which tenant it serves is configuration
// (ZTBANK_WORKLOAD); the binary is tenant-agnostic.
package main

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"os"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ztbank/ztbank/libs/dbcred/fromenv"
	"github.com/ztbank/ztbank/libs/server"
	"github.com/ztbank/ztbank/services/payment/config"
	"github.com/ztbank/ztbank/services/payment/store"
)

func main() { server.Main(config.Service, run) }

// run wires the service from its environment and blocks until ctx is done. Tests call it
// directly with their own getenv and a cancellable ctx.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	cfg, err := config.Load(getenv)
	if err != nil {
		return err
	}
	opts := []store.Option{store.WithLease(cfg.Lease)}
	if cfg.Failpoint == config.FailAfterLedgerPost {
		// SIGKILL, not exit: nothing may run after the ledger's reply, not even deferred
		// clean-up, exactly as when the process is killed from outside.
		opts = append(opts, store.WithAfterTransfer(func() { syscall.Kill(os.Getpid(), syscall.SIGKILL) }))
	}
	return fromenv.Run(ctx, cfg.Config, args, stderr, func(rt *server.Runtime, peers []*server.Peer, pool *pgxpool.Pool) (http.Handler, error) {
		ledger, err := rt.SameTenantPeer("ledger")
		if err != nil {
			return nil, err
		}
		payments, lc := store.New(pool, opts...), NewLedgerClient(ledger)
		go recoverPending(ctx, rt.Log, payments, lc, cfg.RecoverEvery)
		return NewServer(rt, peers, payments, lc), nil
	})
}

// recoverPending settles pending payments nobody is working on (store.Recover) once at
// start-up — a crash between the ledger's reply and the outcome write is exactly what a
// restarted process finds — and then every period until ctx ends. A failed pass (ledger or
// database unreachable) is logged and the next one tries again.
func recoverPending(ctx context.Context, log *slog.Logger, payments *store.Store, ledger store.PostingLookup, every time.Duration) {
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		st, err := payments.Recover(ctx, ledger)
		if st.Posted+st.Failed > 0 {
			log.Info("recovered pending payments", "posted", st.Posted, "failed", st.Failed, "skipped", st.Skipped)
		}
		if err != nil && ctx.Err() == nil {
			log.Warn("pending-payment recovery incomplete; retrying next period", "err", err)
		}
		t.Reset(every)
	}
}
