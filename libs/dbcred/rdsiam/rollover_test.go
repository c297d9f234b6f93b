package rdsiam_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ztbank/ztbank/devkit/awsfake"
	"github.com/ztbank/ztbank/devkit/localpg"
	"github.com/ztbank/ztbank/libs/db"
	"github.com/ztbank/ztbank/libs/dbcred"
	"github.com/ztbank/ztbank/libs/dbcred/rdsiam"
)

// countingCreds is the credentials chain (Pod Identity in EKS): static keys, a new session
// token per call, and a count of calls, which is the number of token generations (Source
// retrieves credentials once per token it signs).
type countingCreds struct {
	key   aws.Credentials
	calls atomic.Int32
}

func (c *countingCreds) Retrieve(context.Context) (aws.Credentials, error) {
	out := c.key
	out.SessionToken = fmt.Sprintf("session-%d", c.calls.Add(1))
	return out, nil
}

// TestRolloverThroughARealPool: the production token source and pool (rdsiam.Source,
// dbcred.Pool, db.Transact) against a real PostgreSQL whose logins for the service user are
// judged as RDS judges them (awsfake.RDSIAM: a signed, unexpired token, all unexpired tokens
// valid at once), with the 15-minute token life scaled down to tokenLife and everything
// derived from it in production's proportions (renew skew 3/15, plus a second, connection
// lifetime 10/15).
// Concurrent load runs until the fake has accepted logins with four tokens (three
// rollovers). Then: no query and no login failed, the number of tokens signed is what the
// scaled lifetime allows for that time (at most one per renewal period, so not one per
// connection), and the first token, now past its lifetime, is refused.
func TestRolloverThroughARealPool(t *testing.T) {
	const (
		tokenLife = 10 * time.Second
		// Production's proportion, plus the second X-Amz-Date loses (it has whole seconds, so
		// the fake may see a token up to a second older than the source does): a login keeps
		// the scaled margin.
		skew       = tokenLife*3/15 + time.Second
		connLife   = tokenLife * 10 / 15
		renewEvery = tokenLife - skew
		wantTokens = 4
		workers    = 12
		maxConns   = 8
		user       = "ledger_svc"
	)
	ctx := t.Context()
	key := aws.Credentials{AccessKeyID: "AKIDROLLOVER", SecretAccessKey: "rollover-secret-key"}
	fake, err := awsfake.NewRDSIAM("eu-west-1", key, tokenLife)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fake.Close() })

	dir := t.TempDir()
	hba := filepath.Join(dir, "rds_hba.conf")
	if err := os.WriteFile(hba, []byte(fake.HBALine(user)+"\nhostssl all all 127.0.0.1/32 scram-sha-256\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cluster, err := localpg.Start(ctx, filepath.Join(dir, "pg"), localpg.Throwaway(), localpg.WithSetting("hba_file", "'"+hba+"'"))
	if errors.Is(err, localpg.ErrNoBinaries) {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cluster.Stop() })
	endpoint := net.JoinHostPort(cluster.Host(), strconv.Itoa(cluster.Port()))
	fake.SetEndpoint(endpoint)

	admin, err := pgx.Connect(ctx, cluster.AdminDSN("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(context.WithoutCancel(ctx))
	for _, q := range []string{
		`CREATE ROLE ` + user + ` LOGIN`, // no password: the fake decides
		`CREATE TABLE hits (id bigserial PRIMARY KEY, worker int NOT NULL)`,
		`GRANT SELECT, INSERT ON hits TO ` + user,
		`GRANT USAGE ON SEQUENCE hits_id_seq TO ` + user,
	} {
		if _, err := admin.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}

	creds := &countingCreds{key: key}
	src, err := rdsiam.New(endpoint, "eu-west-1", user, creds, rdsiam.WithTokenLifetime(tokenLife), rdsiam.WithSkew(skew))
	if err != nil {
		t.Fatal(err)
	}
	first, err := src.Token(ctx) // the pool's first logins use it too
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	pool, err := dbcred.Pool(ctx, cluster.DSN(user, "", "postgres"), src,
		dbcred.WithRegisterer(prometheus.NewRegistry()), dbcred.WithMaxConnLifetime(connLife),
		dbcred.WithConfig(func(c *pgxpool.Config) { c.MaxConns = maxConns }))
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()

	// Load until the fake has seen logins with wantTokens tokens. Each renewal is due
	// renewEvery after the last and happens at the next login, which comes within a
	// connection lifetime (plus its tenth of jitter): that bounds the wait.
	deadline := time.Duration(wantTokens) * (renewEvery + connLife*11/10)
	loadCtx, stop := context.WithTimeout(ctx, deadline)
	defer stop()
	var (
		wg              sync.WaitGroup
		inserts, reads  atomic.Int64
		mu              sync.Mutex
		failures        []string
		failed          atomic.Int64
		opTimeout       = tokenLife // an operation waits at most for a login to be possible again
		recordFailure   = func(err error) { failed.Add(1); mu.Lock(); failures = append(failures, err.Error()); mu.Unlock() }
		rolledOver      = make(chan struct{})
		closeRolledOver = sync.OnceFunc(func() { close(rolledOver) })
	)
	for w := range workers {
		wg.Go(func() {
			for i := 0; loadCtx.Err() == nil; i++ {
				opCtx, cancel := context.WithTimeout(context.WithoutCancel(loadCtx), opTimeout)
				var err error
				if i%2 == 0 {
					err = db.Transact(opCtx, pool, func(tx pgx.Tx) error {
						_, err := tx.Exec(opCtx, `INSERT INTO hits (worker) VALUES ($1)`, w)
						return err
					})
					if err == nil {
						inserts.Add(1)
					}
				} else {
					var n int64
					// A plain pool query: no Transact retry behind it.
					err = pool.QueryRow(opCtx, `SELECT count(*) FROM hits WHERE worker = $1`, w).Scan(&n)
					if err == nil {
						reads.Add(1)
					}
				}
				cancel()
				if err != nil {
					recordFailure(err)
				}
				if _, tokens := fake.Accepted(); tokens >= wantTokens {
					closeRolledOver()
				}
			}
		})
	}
	select {
	case <-rolledOver:
	case <-loadCtx.Done():
	}
	elapsed := time.Since(start)
	stop()
	wg.Wait()

	generations := int(creds.calls.Load())
	logins, tokens := fake.Accepted()
	conns := pool.Stat().NewConnsCount()
	t.Logf("%v at %d workers through a pool of %d (token life %v, renewal every %v, connection lifetime %v): %d inserts, %d reads, %d failed; %d token generations, %d logins accepted with %d tokens, %d connections opened",
		elapsed.Truncate(time.Millisecond), workers, maxConns, tokenLife, renewEvery, connLife, inserts.Load(), reads.Load(), failed.Load(), generations, logins, tokens, conns)
	if tokens < wantTokens {
		t.Fatalf("after %v the fake had seen %d tokens, want %d: no rollover within the wait the configured lifetimes allow", elapsed, tokens, wantTokens)
	}
	if n := failed.Load(); n > 0 {
		t.Errorf("%d operations failed across the rollovers; first: %q", n, failures[:min(3, len(failures))])
	}
	if r := fake.Refused(); len(r) > 0 {
		t.Errorf("the fake refused %d logins: %q", len(r), r[:min(3, len(r))])
	}
	// One generation at the start, then at most one per renewal period: never one per
	// connection. Every token signed was used for a login.
	if maxGen := 1 + int(elapsed/renewEvery); generations > maxGen {
		t.Errorf("%d token generations in %v, want at most %d (one per %v)", generations, elapsed, maxGen, renewEvery)
	}
	// Every generation is for a login; one started as the load stopped may not have reached
	// the fake yet.
	if generations != tokens && generations != tokens+1 {
		t.Errorf("%d token generations but logins used %d tokens", generations, tokens)
	}
	if int64(generations) >= conns {
		t.Errorf("%d token generations for %d connections: the pool must share tokens", generations, conns)
	}
	var total int64
	if err := admin.QueryRow(ctx, `SELECT count(*) FROM hits`).Scan(&total); err != nil {
		t.Fatal(err)
	}
	if total != inserts.Load() {
		t.Errorf("%d rows, %d inserts reported committed", total, inserts.Load())
	}

	// The fake is RDS, not a rubber stamp: the first token is past its lifetime now.
	if age := time.Since(start); age < tokenLife {
		t.Fatalf("run shorter than a token's lifetime (%v)", age)
	}
	cfg, err := pgx.ParseConfig(cluster.DSN(user, "", "postgres"))
	if err != nil {
		t.Fatal(err)
	}
	cfg.Password = first.Password
	if c, err := pgx.ConnectConfig(ctx, cfg); err == nil {
		c.Close(ctx)
		t.Error("a login with the first token succeeded after its lifetime")
	} else if db.Code(err) != "28000" && db.Code(err) != "28P01" {
		t.Errorf("login with an expired token: %v, want an authentication failure", err)
	}
}
