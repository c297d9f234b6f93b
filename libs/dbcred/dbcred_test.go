package dbcred_test

import (
	"context"
	"errors"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ztbank/ztbank/devkit/localpg/pgtest"
	"github.com/ztbank/ztbank/libs/db"
	"github.com/ztbank/ztbank/libs/dbcred"
	"github.com/ztbank/ztbank/libs/dbcred/passwordfile"
)

var env *pgtest.Env

func TestMain(m *testing.M) {
	os.Exit(pgtest.Main(m, func(e *pgtest.Env) error { env = e; return nil }))
}

func TestPoolRequiresVerifyFull(t *testing.T) {
	pgtest.Require(t)
	good := env.Cluster.DSN("account_svc", "", "bank_a")
	src := passwordfile.New(env.PasswordFile("account_svc"))
	for _, mode := range []string{"disable", "allow", "prefer", "require", "verify-ca"} {
		dsn := strings.Replace(good, "sslmode=verify-full", "sslmode="+mode, 1)
		_, err := dbcred.Pool(t.Context(), dsn, src, dbcred.WithRegisterer(prometheus.NewRegistry()))
		if !errors.Is(err, dbcred.ErrInsecureTLS) {
			t.Errorf("sslmode=%s: err = %v, want ErrInsecureTLS", mode, err)
		}
	}
	for _, d := range []time.Duration{0, 15 * time.Minute, time.Hour} {
		_, err := dbcred.Pool(t.Context(), good, src, dbcred.WithRegisterer(prometheus.NewRegistry()), dbcred.WithMaxConnLifetime(d))
		if err == nil {
			t.Errorf("lifetime %v accepted", d)
		}
	}
	pool, err := dbcred.Pool(t.Context(), good, src, dbcred.WithRegisterer(prometheus.NewRegistry()))
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	if got := pool.Config().MaxConnLifetime + pool.Config().MaxConnLifetimeJitter; got >= 15*time.Minute {
		t.Errorf("connection lifetime up to %v, want under 15m", got)
	}
	var ssl bool
	if err := pool.QueryRow(t.Context(), `SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()`).Scan(&ssl); err != nil || !ssl {
		t.Errorf("ssl = %v, %v; want a TLS connection", ssl, err)
	}
}

func TestCredentialFailuresAreCounted(t *testing.T) {
	pgtest.Require(t)
	reg := prometheus.NewRegistry()
	boom := errors.New("no credential")
	src := dbcred.TokenSourceFunc(func(context.Context) (dbcred.Credential, error) { return dbcred.Credential{}, boom })
	pool, err := dbcred.Pool(t.Context(), env.Cluster.DSN("account_svc", "", "bank_a"), src, dbcred.WithRegisterer(reg))
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	if err := pool.Ping(t.Context()); !errors.Is(err, boom) {
		t.Errorf("Ping() = %v, want %v", err, boom)
	}
	if got := counter(t, reg, "ztbank_db_credential_failures_total", "account_svc"); got != 1 {
		t.Errorf("failures = %v, want 1", got)
	}
}

// TestRotationUnderLoad rotates the role's password (short VALID UNTIL) while queries run
// through a pool that recycles connections quickly. No query may fail; PostgreSQL must
// refuse a password once it is past VALID UNTIL; and the pool must pick up the next one.
func TestRotationUnderLoad(t *testing.T) {
	pgtest.Require(t)
	ctx := t.Context()
	// The password lives ttl and is replaced every ttl/3, so a late rotation on a busy
	// machine still has 2/3 of ttl before the old password lapses. A connection that raced a
	// rotation retries inside db.Transact; its retry budget must outlast one rotation period
	// (full-jitter backoff waits half the ceiling on average), not ~1 s as the defaults give.
	const role, ttl = "ledger_svc", 6 * time.Second
	const every, maxDelay = ttl / 3, 250 * time.Millisecond
	attempts := 10 + int(2*every/maxDelay)
	if _, err := env.Rotate(ctx, role, ttl); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	pool, err := env.Pool(ctx, role, "bank_b", dbcred.WithRegisterer(reg), dbcred.WithMaxConnLifetime(300*time.Millisecond),
		dbcred.WithConfig(func(c *pgxpool.Config) { c.MaxConns = 4; c.HealthCheckPeriod = 50 * time.Millisecond }))
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()

	var ok, failed atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 3 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				err := db.Transact(ctx, pool, func(tx pgx.Tx) error {
					_, err := tx.Exec(ctx, `SELECT count(*) FROM ledger.accounts`)
					return err
				}, db.ReadOnly(), db.WithMaxAttempts(attempts), db.WithBackoff(2*time.Millisecond, maxDelay))
				if err != nil {
					failed.Add(1)
					t.Errorf("query during rotation: %v", err)
				} else {
					ok.Add(1)
				}
				time.Sleep(5 * time.Millisecond)
			}
		})
	}
	var last dbcred.Credential
	const rotations = 5
	for range rotations {
		time.Sleep(every)
		if last, err = env.Rotate(ctx, role, ttl); err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	wg.Wait()
	if failed.Load() != 0 || ok.Load() < 50 {
		t.Errorf("%d queries failed and %d succeeded; want 0 failures and steady traffic", failed.Load(), ok.Load())
	}
	if got := counter(t, reg, "ztbank_db_credential_refreshes_total", role); got < rotations {
		t.Errorf("credential refreshes = %v, want at least %d (one per rotation)", got, rotations)
	}
	if got := counter(t, reg, "ztbank_db_pool_new_conns_total", role); got < rotations {
		t.Errorf("pool opened %v connections, want connections recycled through the rotations", got)
	}

	// The current password, once past VALID UNTIL, is refused by the server itself.
	time.Sleep(time.Until(last.ExpiresAt) + 200*time.Millisecond)
	conn, err := pgx.Connect(ctx, env.Cluster.DSN(role, last.Password, "bank_b"))
	if err == nil {
		conn.Close(ctx)
		t.Fatal("connected with a password past VALID UNTIL")
	}
	if db.Code(err) != "28P01" {
		t.Errorf("expired password: %v, want SQLSTATE 28P01", err)
	}
	// The rotator's next password is picked up by the next connection, first time.
	if _, err := env.Rotate(ctx, role, ttl); err != nil {
		t.Fatal(err)
	}
	pool.Reset() // drop connections opened with the old password
	if err := pool.Ping(ctx); err != nil {
		t.Errorf("ping after rotation: %v", err)
	}
}

func counter(t *testing.T, reg *prometheus.Registry, name, role string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "role" && l.GetValue() == role {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}
