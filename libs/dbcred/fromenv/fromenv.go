// Package fromenv opens a service's database pool from its environment with every
// credential source the platform supports: rotated password files locally, RDS IAM tokens
// on EKS (ZTBANK_DB_AUTH chooses). It exists so each service's main does not repeat the
// wiring; dbcred itself cannot name its sources, which import it.
package fromenv

import (
	"context"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ztbank/ztbank/libs/dbcred"
	"github.com/ztbank/ztbank/libs/dbcred/passwordfile"
	"github.com/ztbank/ztbank/libs/dbcred/rdsiam"
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

// Attach opens the service's pool, closes it with the runtime, and returns it with the
// readiness check that pings it.
func Attach(ctx context.Context, rt *server.Runtime, getenv func(string) string) (*pgxpool.Pool, server.ReadyCheck, error) {
	pool, err := Pool(ctx, getenv)
	if err != nil {
		return nil, nil, err
	}
	rt.AtClose(pool.Close)
	return pool, pool.Ping, nil
}
