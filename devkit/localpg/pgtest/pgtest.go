// Package pgtest gives an integration test package one migrated PostgreSQL cluster: started
// once in TestMain, every tenant database migrated, every service role given a rotated
// password in a file, and pools that log in as those roles through libs/dbcred exactly as
// the services do.
package pgtest

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ztbank/ztbank/devkit/demo/seed"
	"github.com/ztbank/ztbank/devkit/localpg"
	"github.com/ztbank/ztbank/devkit/localspire"
	"github.com/ztbank/ztbank/libs/dbcred"
	"github.com/ztbank/ztbank/libs/dbcred/passwordfile"
	"github.com/ztbank/ztbank/libs/migrate"
	"github.com/ztbank/ztbank/libs/topology"
)

// Env is a running, migrated cluster.
type Env struct {
	Cluster  *localpg.Cluster
	Topology *topology.Topology
	dir      string
}

// skipReason is why Main did not start a server, or "" when it did.
var skipReason string

// Main runs the package's tests against a fresh Env that setup may use to store globals.
// With -short, or while fuzzing (go test -fuzz), it starts no server and runs the tests
// anyway: integration tests call Require and skip, unit tests and fuzz targets run.
func Main(m *testing.M, setup func(*Env) error) int {
	flag.Parse()
	switch {
	case testing.Short():
		skipReason = "integration test skipped in -short mode: it needs a PostgreSQL server (devkit/localpg)"
	case flag.Lookup("test.fuzz") != nil && flag.Lookup("test.fuzz").Value.String() != "":
		skipReason = "integration test skipped while fuzzing"
	}
	if skipReason != "" {
		return m.Run()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	env, err := Start(ctx)
	cancel()
	if err != nil {
		fmt.Fprintln(os.Stderr, "pgtest:", err)
		return 1
	}
	defer env.Close()
	if setup != nil {
		if err := setup(env); err != nil {
			fmt.Fprintln(os.Stderr, "pgtest setup:", err)
			return 1
		}
	}
	return m.Run()
}

// MainSeeded is Main with the demo data (devkit/demo/seed) loaded into every tenant
// database before setup runs: the handler and store tests of the services read the demo
// users and accounts by name.
func MainSeeded(m *testing.M, setup func(ctx context.Context, e *Env) error) int {
	return Main(m, func(e *Env) error {
		ctx := context.Background()
		if err := seed.Run(ctx, e.Cluster.AdminDSN("postgres"), e.Topology); err != nil {
			return fmt.Errorf("seed: %w", err)
		}
		return setup(ctx, e)
	})
}

// Require skips t when Main started no server.
func Require(t testing.TB) {
	t.Helper()
	if skipReason != "" {
		t.Skip(skipReason)
	}
}

// Start starts a throwaway cluster, migrates every tenant database from the repository's
// migrations/ directory and rotates every service role's password (15 minutes).
func Start(ctx context.Context) (*Env, error) {
	migrations, err := MigrationsDir()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "pgtest-")
	if err != nil {
		return nil, err
	}
	c, err := localpg.Start(ctx, filepath.Join(dir, "pg"), localpg.Throwaway())
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	env := &Env{Cluster: c, Topology: topology.Default(), dir: dir}
	if err := migrate.UpAll(ctx, c.AdminDSN("postgres"), env.Topology, os.DirFS(migrations)); err != nil {
		env.Close()
		return nil, err
	}
	for _, w := range env.Topology.Workloads {
		if w.DBRole == "" {
			continue
		}
		if _, err := env.Rotate(ctx, w.DBRole, 15*time.Minute); err != nil {
			env.Close()
			return nil, err
		}
	}
	return env, nil
}

// Close stops the server and deletes its files.
func (e *Env) Close() {
	e.Cluster.Stop()
	os.RemoveAll(e.dir)
}

// PasswordFile is where Rotate writes role's password.
func (e *Env) PasswordFile(role string) string {
	return filepath.Join(e.dir, "secrets", role+".password")
}

// Rotate gives role a new password valid for ttl and writes it to PasswordFile(role).
func (e *Env) Rotate(ctx context.Context, role string, ttl time.Duration) (dbcred.Credential, error) {
	admin, err := pgx.Connect(ctx, e.Cluster.AdminDSN("postgres"))
	if err != nil {
		return dbcred.Credential{}, err
	}
	defer admin.Close(context.Background())
	return passwordfile.Rotate(ctx, admin, role, e.PasswordFile(role), ttl)
}

// Pool opens a pool logged in as role on database db, reading the role's password file for
// each connection. Its metrics go to a private registry unless opts say otherwise.
func (e *Env) Pool(ctx context.Context, role, db string, opts ...dbcred.Option) (*pgxpool.Pool, error) {
	opts = append([]dbcred.Option{dbcred.WithRegisterer(prometheus.NewRegistry())}, opts...)
	return dbcred.Pool(ctx, e.Cluster.DSN(role, "", db), passwordfile.New(e.PasswordFile(role)), opts...)
}

// Admin opens a superuser pool on db, for test fixtures and assertions only.
func (e *Env) Admin(ctx context.Context, db string) (*pgxpool.Pool, error) {
	return pgxpool.New(ctx, e.Cluster.AdminDSN(db))
}

// MigrationsDir is the repository's migrations/ directory, beside go.work (go test runs in
// the package directory, somewhere below it).
func MigrationsDir() (string, error) {
	root, err := localspire.RepoRoot()
	if err != nil {
		return "", fmt.Errorf("pgtest: %w", err)
	}
	dir := filepath.Join(root, "migrations")
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		return "", fmt.Errorf("pgtest: no migrations/ directory beside %s", filepath.Join(root, "go.work"))
	}
	return dir, nil
}
