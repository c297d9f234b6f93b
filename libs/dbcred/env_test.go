package dbcred_test

import (
	"context"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ztbank/ztbank/devkit/localpg/pgtest"
	"github.com/ztbank/ztbank/libs/dbcred"
	"github.com/ztbank/ztbank/libs/dbcred/passwordfile"
)

func envOf(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestEnvFromGetenvErrors(t *testing.T) {
	// sslrootcert=system: pgconn loads the CA file while parsing, and the system roots exist.
	const dsnSystem = "host=db.example port=5432 dbname=bank_a user=account_svc sslmode=verify-full sslrootcert=system"
	for _, tc := range []struct {
		name string
		env  map[string]string
		want string // the variable the one-line error must name
	}{
		{"no DSN", map[string]string{"ZTBANK_DB_AUTH": "passwordfile"}, "ZTBANK_DB_DSN is not set"},
		{"no auth", map[string]string{"ZTBANK_DB_DSN": dsnSystem}, "ZTBANK_DB_AUTH is not set"},
		{"unknown auth", map[string]string{"ZTBANK_DB_DSN": dsnSystem, "ZTBANK_DB_AUTH": "ldap"}, `ZTBANK_DB_AUTH "ldap"`},
		{"passwordfile without file", map[string]string{"ZTBANK_DB_DSN": dsnSystem, "ZTBANK_DB_AUTH": "passwordfile"}, "ZTBANK_DB_PASSWORD_FILE is not set"},
		{"rdsiam without region", map[string]string{"ZTBANK_DB_DSN": dsnSystem, "ZTBANK_DB_AUTH": "rdsiam"}, "ZTBANK_DB_REGION is not set"},
		{"plaintext DSN", map[string]string{"ZTBANK_DB_DSN": "host=db.example user=u sslmode=require", "ZTBANK_DB_AUTH": "rdsiam", "ZTBANK_DB_REGION": "eu-west-1"}, "ZTBANK_DB_DSN: dbcred: host db.example"},
		{"password in DSN", map[string]string{"ZTBANK_DB_DSN": dsnSystem + " password=hunter2", "ZTBANK_DB_AUTH": "rdsiam", "ZTBANK_DB_REGION": "eu-west-1"}, "ZTBANK_DB_DSN contains a password"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := dbcred.EnvFromGetenv(envOf(tc.env))
			if err == nil {
				t.Fatalf("EnvFromGetenv() = nil error, want one naming %q", tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
				t.Errorf("EnvFromGetenv() error = %q, want one line containing %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Errorf("EnvFromGetenv() error leaks the password: %q", err)
			}
		})
	}
}

func TestEnvFromGetenvRDSIAMEndpoint(t *testing.T) {
	c, err := dbcred.EnvFromGetenv(envOf(map[string]string{
		"ZTBANK_DB_DSN":    "postgres://ledger_svc@db.example:6543/bank_b?sslmode=verify-full&sslrootcert=system",
		"ZTBANK_DB_AUTH":   "rdsiam",
		"ZTBANK_DB_REGION": "eu-west-1",
	}))
	if err != nil {
		t.Fatal(err)
	}
	if c.Endpoint != "db.example:6543" || c.User != "ledger_svc" || c.Region != "eu-west-1" {
		t.Errorf("EnvFromGetenv() = endpoint %q user %q region %q, want db.example:6543 ledger_svc eu-west-1", c.Endpoint, c.User, c.Region)
	}
	// The binary must opt in to each method; the RDS source is never built implicitly.
	_, err = dbcred.PoolFromEnv(t.Context(), envOf(map[string]string{
		"ZTBANK_DB_DSN":  "postgres://ledger_svc@db.example:6543/bank_b?sslmode=verify-full&sslrootcert=system",
		"ZTBANK_DB_AUTH": "rdsiam", "ZTBANK_DB_REGION": "eu-west-1",
	}), dbcred.Authenticators{})
	if err == nil || !strings.Contains(err.Error(), "not supported") {
		t.Errorf("PoolFromEnv() without an rdsiam constructor: error = %v, want not supported", err)
	}
}

// TestPoolFromEnvPasswordFile connects through the environment contract the local stack
// uses, to a real server with a rotated password.
func TestPoolFromEnvPasswordFile(t *testing.T) {
	pgtest.Require(t)
	ctx := t.Context()
	getenv := envOf(map[string]string{
		"ZTBANK_DB_DSN":           env.Cluster.DSN("ledger_svc", "", "bank_b"),
		"ZTBANK_DB_AUTH":          "passwordfile",
		"ZTBANK_DB_PASSWORD_FILE": env.PasswordFile("ledger_svc"),
	})
	auth := dbcred.Authenticators{PasswordFile: func(p string) dbcred.TokenSource { return passwordfile.New(p) }}
	pool, err := dbcred.PoolFromEnv(ctx, getenv, auth, dbcred.WithRegisterer(prometheus.NewRegistry()))
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	var user string
	if err := pool.QueryRow(ctx, "SELECT current_user").Scan(&user); err != nil {
		t.Fatal(err)
	}
	if user != "ledger_svc" {
		t.Errorf("current_user = %q, want ledger_svc", user)
	}
	// A wrong file is a connection failure, not a silent fallback.
	bad := envOf(map[string]string{
		"ZTBANK_DB_DSN":           env.Cluster.DSN("ledger_svc", "", "bank_b"),
		"ZTBANK_DB_AUTH":          "passwordfile",
		"ZTBANK_DB_PASSWORD_FILE": env.PasswordFile("ledger_svc") + ".missing",
	})
	pool2, err := dbcred.PoolFromEnv(context.Background(), bad, auth, dbcred.WithRegisterer(prometheus.NewRegistry()))
	if err != nil {
		t.Fatal(err)
	}
	defer pool2.Close()
	if err := pool2.Ping(ctx); err == nil {
		t.Error("Ping() with a missing password file succeeded")
	}
}
