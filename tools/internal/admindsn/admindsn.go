// Package admindsn checks the admin connection URL that the database tools (dbadmin and
// composeinit's rotator) take from -dsn or $ZTBANK_DB_ADMIN_DSN. The admin password travels
// in that URL, so the tools share one rule for it rather than each deciding what is safe.
package admindsn

import (
	"github.com/jackc/pgx/v5"

	"github.com/ztbank/ztbank/libs/dbcred"
)

// Parse parses dsn and refuses it unless it verifies the server fully (sslmode=verify-full):
// the password must not go to a server whose name and certificate were not checked. Errors
// name neither the variable nor the flag; the caller knows which one it read.
func Parse(dsn string) (*pgx.ConnConfig, error) {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return nil, err
	}
	if err := dbcred.RequireVerifyFull(&cfg.Config); err != nil {
		return nil, err
	}
	return cfg, nil
}
