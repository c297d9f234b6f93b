// Package fromenv opens a service's database pool from its environment with every
// credential source the platform supports: rotated password files locally, RDS IAM tokens
// on EKS (ZTBANK_DB_AUTH chooses). It exists so each service's main does not repeat the
// wiring; dbcred itself cannot name its sources, which import it.
package fromenv

import (
	"context"
	"io"
	"net/http"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ztbank/ztbank/libs/dbcred"
	"github.com/ztbank/ztbank/libs/dbcred/passwordfile"
	"github.com/ztbank/ztbank/libs/dbcred/rdsiam"
	"github.com/ztbank/ztbank/libs/envvar"
	"github.com/ztbank/ztbank/libs/server"
)

// Authenticators are the credential sources a ztbank service binary supports.
var Authenticators = dbcred.Authenticators{
	PasswordFile: func(path string) dbcred.TokenSource { return passwordfile.New(path) },
	RDSIAM: func(ctx context.Context, endpoint, region, user string) (dbcred.TokenSource, error) {
		return rdsiam.NewFromDefaultChain(ctx, endpoint, region, user)
	},
}

// Pool opens the pool the environment describes (see dbcred.EnvFromGetenv). Queries are
// traced by dbcred.Pool itself.
func Pool(ctx context.Context, getenv func(string) string, opts ...dbcred.Option) (*pgxpool.Pool, error) {
	return dbcred.PoolFromEnv(ctx, getenv, Authenticators, opts...)
}

// Vars declares every variable a service with a database reads.
var Vars = envvar.Join(server.TenantVars, dbcred.Vars)

// Config is the whole configuration of a service with a database: the shared service part
// and its database.
type Config struct {
	Server server.Config
	DB     dbcred.EnvConfig
	// Read lists every variable the loader read, set or not (the deploy contract checks that
	// a deployment sets nothing outside it).
	Read []string
}

// Load reads and checks the configuration of the service binary service, in one place.
func Load(service string, getenv func(string) string) (Config, error) {
	r := envvar.NewReader(getenv, Vars)
	srv, err := server.LoadConfig(service, r)
	if err != nil {
		return Config{}, err
	}
	db, err := dbcred.EnvFromGetenv(r.Get)
	if err != nil {
		return Config{}, err
	}
	return Config{Server: srv, DB: db, Read: r.Read()}, r.Err()
}

// Attach opens the service's pool from its loaded database configuration, closes it with the
// runtime, and returns it with the readiness check that pings it.
func Attach(ctx context.Context, rt *server.Runtime, db dbcred.EnvConfig) (*pgxpool.Pool, server.ReadyCheck, error) {
	pool, err := dbcred.PoolFromConfig(ctx, db, Authenticators)
	if err != nil {
		return nil, nil, err
	}
	rt.AtClose(pool.Close)
	return pool, pool.Ping, nil
}

// Build assembles a database-backed service's API once its runtime, its peers (every
// workload the topology lets it call) and its pool exist.
type Build func(rt *server.Runtime, peers []*server.Peer, pool *pgxpool.Pool) (http.Handler, error)

// Run is the body of a database-backed tenant service's run function, for the configuration
// its own loader read: set up, open the peers and the pool (closed with the runtime, pinged
// by /readyz), build the API and serve it until ctx is done (server.RunConfig).
func Run(ctx context.Context, cfg Config, args []string, stderr io.Writer, build Build) error {
	return server.RunConfig(ctx, cfg.Server, args, stderr, func(ctx context.Context, rt *server.Runtime) (http.Handler, []server.ReadyCheck, error) {
		peers, err := rt.Peers()
		if err != nil {
			return nil, nil, err
		}
		pool, ping, err := Attach(ctx, rt, cfg.DB)
		if err != nil {
			return nil, nil, err
		}
		api, err := build(rt, peers, pool)
		if err != nil {
			return nil, nil, err
		}
		return api, []server.ReadyCheck{ping}, nil
	})
}

// LoadAndRun is the whole run function of a database-backed service whose configuration is
// exactly Config: read it with the binary's own loader (its config.Load, the one the deploy
// contract test runs), then Run. A service that needs more than Config loads it itself.
func LoadAndRun(ctx context.Context, load func(getenv func(string) string) (Config, error), args []string, getenv func(string) string, stderr io.Writer, build Build) error {
	cfg, err := load(getenv)
	if err != nil {
		return err
	}
	return Run(ctx, cfg, args, stderr, build)
}
