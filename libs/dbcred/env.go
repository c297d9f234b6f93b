package dbcred

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ztbank/ztbank/libs/envvar"
)

// Authentication methods ZTBANK_DB_AUTH may name.
const (
	AuthPasswordFile = "passwordfile"
	AuthRDSIAM       = "rdsiam"
)

// EnvConfig is a service's database configuration as its environment states it:
//
//	ZTBANK_DB_DSN            libpq keyword/value or URL, no password, sslmode=verify-full
//	ZTBANK_DB_AUTH           passwordfile | rdsiam
//	ZTBANK_DB_PASSWORD_FILE  (passwordfile) file the local stack rotates
//	ZTBANK_DB_REGION         (rdsiam) AWS region of the database
//
// For rdsiam the token's endpoint and user are the DSN's host:port and user, so the token
// is always minted for the server and role the pool actually connects to.
type EnvConfig struct {
	DSN          string
	Auth         string
	PasswordFile string
	Region       string
	Endpoint     string // host:port of the DSN's first host
	User         string // the DSN's user
}

// Vars declares the variables EnvFromGetenv reads.
var Vars = []envvar.Var{
	{Name: "ZTBANK_DB_DSN", Doc: "libpq keyword/value string or URL of the service's database, without a password, with sslmode=verify-full (and sslrootcert unless the system roots apply). Required."},
	{Name: "ZTBANK_DB_AUTH", Doc: "where the login credential comes from: passwordfile (rotated 15-minute passwords) or rdsiam (RDS IAM tokens). Required."},
	{Name: "ZTBANK_DB_PASSWORD_FILE", Doc: "passwordfile only: the file holding the current password, re-read for every new connection."},
	{Name: "ZTBANK_DB_REGION", Doc: "rdsiam only: the AWS region of the database."},
}

// Authenticators builds the TokenSource for each method. The implementations live in
// passwordfile and rdsiam, which import this package, so this package cannot name them;
// callers pass their constructors (a nil one makes that method unsupported by the binary).
type Authenticators struct {
	PasswordFile func(path string) TokenSource
	RDSIAM       func(ctx context.Context, endpoint, region, user string) (TokenSource, error)
}

// EnvFromGetenv reads and checks EnvConfig. Each error is one line naming the variable to
// set, because it is what an operator sees when a service refuses to start.
func EnvFromGetenv(getenv func(string) string) (EnvConfig, error) {
	// Each method's own variable is read only for that method, so a deployment that sets the
	// other one shows up as an unread variable in the deploy contract.
	c := EnvConfig{
		DSN:  getenv("ZTBANK_DB_DSN"),
		Auth: getenv("ZTBANK_DB_AUTH"),
	}
	switch c.Auth {
	case AuthPasswordFile:
		c.PasswordFile = getenv("ZTBANK_DB_PASSWORD_FILE")
	case AuthRDSIAM:
		c.Region = getenv("ZTBANK_DB_REGION")
	}
	if c.DSN == "" {
		return c, errors.New("ZTBANK_DB_DSN is not set (e.g. host=db.example port=5432 dbname=<tenant database> user=account_svc sslmode=verify-full sslrootcert=/etc/ztbank/db-ca.crt)")
	}
	cfg, err := pgconn.ParseConfig(c.DSN)
	if err != nil {
		return c, fmt.Errorf("ZTBANK_DB_DSN: %w", err)
	}
	if cfg.Password != "" {
		return c, errors.New("ZTBANK_DB_DSN contains a password; remove it (credentials come from ZTBANK_DB_AUTH)")
	}
	if err := RequireVerifyFull(cfg); err != nil {
		return c, fmt.Errorf("ZTBANK_DB_DSN: %w", err)
	}
	c.Endpoint = net.JoinHostPort(cfg.Host, strconv.Itoa(int(cfg.Port)))
	c.User = cfg.User
	switch c.Auth {
	case AuthPasswordFile:
		if c.PasswordFile == "" {
			return c, errors.New("ZTBANK_DB_PASSWORD_FILE is not set (ZTBANK_DB_AUTH=passwordfile needs the rotated password's file)")
		}
	case AuthRDSIAM:
		if c.Region == "" {
			return c, errors.New("ZTBANK_DB_REGION is not set (ZTBANK_DB_AUTH=rdsiam needs the database's AWS region)")
		}
	case "":
		return c, errors.New("ZTBANK_DB_AUTH is not set (passwordfile or rdsiam)")
	default:
		return c, fmt.Errorf("ZTBANK_DB_AUTH %q: want passwordfile or rdsiam", c.Auth)
	}
	return c, nil
}

// PoolFromEnv opens the service's pool from its environment (see EnvConfig) with the
// credential source the environment names. Like Pool it does not connect eagerly; services
// ping it in their readiness check.
func PoolFromEnv(ctx context.Context, getenv func(string) string, auth Authenticators, opts ...Option) (*pgxpool.Pool, error) {
	c, err := EnvFromGetenv(getenv)
	if err != nil {
		return nil, err
	}
	return PoolFromConfig(ctx, c, auth, opts...)
}

// PoolFromConfig is PoolFromEnv for a configuration already read.
func PoolFromConfig(ctx context.Context, c EnvConfig, auth Authenticators, opts ...Option) (*pgxpool.Pool, error) {
	var (
		src TokenSource
		err error
	)
	switch c.Auth {
	case AuthPasswordFile:
		if auth.PasswordFile == nil {
			return nil, errors.New("ZTBANK_DB_AUTH=passwordfile is not supported by this binary")
		}
		src = auth.PasswordFile(c.PasswordFile)
	case AuthRDSIAM:
		if auth.RDSIAM == nil {
			return nil, errors.New("ZTBANK_DB_AUTH=rdsiam is not supported by this binary")
		}
		if src, err = auth.RDSIAM(ctx, c.Endpoint, c.Region, c.User); err != nil {
			return nil, fmt.Errorf("ZTBANK_DB_AUTH=rdsiam: %w", err)
		}
	}
	return Pool(ctx, c.DSN, src, opts...)
}
