package stack

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ztbank/ztbank/devkit/demo/seed"
	"github.com/ztbank/ztbank/devkit/localpg"
	"github.com/ztbank/ztbank/libs/dbcred/passwordfile"
	"github.com/ztbank/ztbank/libs/migrate"
)

// CredentialTTL is how long a rotated service password is valid; DESIGN.md §7 caps
// database credentials at 15 minutes. Rotation runs every third of it, because a role has
// one password and the previous one stops working the moment a new one is set.
const CredentialTTL = 15 * time.Minute

// PostgresInfo is the database part of stack.json.
type PostgresInfo struct {
	Host   string `json:"host"`
	Port   int    `json:"port"`
	CAFile string `json:"ca_file"`
	Dir    string `json:"dir"`
}

// startPostgres starts (or adopts) the cluster under the state directory, applies the
// migrations and seeds the demo data.
func (s *Stack) startPostgres(ctx context.Context) error {
	c, err := s.startCluster(ctx)
	if err != nil {
		return err
	}
	s.pg = c
	s.Postgres = PostgresInfo{Host: c.Host(), Port: c.Port(), CAFile: c.CAFile(), Dir: c.Dir()}
	admin := c.AdminDSN("postgres")
	s.opts.progress("applying migrations (%s)", filepath.Join(s.opts.Root, "migrations"))
	if err := migrate.UpAll(ctx, admin, s.Topo, os.DirFS(filepath.Join(s.opts.Root, "migrations"))); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	s.opts.progress("seeding demo users and accounts")
	if err := seed.Run(ctx, admin, s.Topo); err != nil {
		return fmt.Errorf("seed: %w", err)
	}
	return nil
}

// startCluster starts (or adopts) the PostgreSQL cluster under the state directory; a
// free-port stack's cluster is a throwaway one.
func (s *Stack) startCluster(ctx context.Context) (*localpg.Cluster, error) {
	var opts []localpg.Option
	if s.opts.FreePorts {
		opts = append(opts, localpg.Throwaway())
	}
	return localpg.Start(ctx, filepath.Join(s.opts.StateDir, "pg"), opts...)
}

// configurePostgres gives each service role its first short-lived password, points each
// service at its database and password file, and starts the rotation.
func (s *Stack) configurePostgres(ctx context.Context) error {
	c := s.pg
	secrets := filepath.Join(s.opts.StateDir, "secrets")
	if err := os.MkdirAll(secrets, 0o700); err != nil {
		return err
	}
	for _, svc := range s.Services {
		w := svc.Workload
		if w.DBRole == "" {
			continue
		}
		tenant, _ := s.Topo.Tenant(w.Tenant)
		pwFile := filepath.Join(secrets, w.Tenant+"-"+w.DBRole+".password")
		s.rotations = append(s.rotations, rotation{role: w.DBRole, db: tenant.Database, file: pwFile})
		svc.Env = append(svc.Env,
			fmt.Sprintf("ZTBANK_DB_DSN=host=%s port=%d dbname=%s user=%s sslmode=verify-full sslrootcert=%s",
				c.Host(), c.Port(), tenant.Database, w.DBRole, c.CAFile()),
			"ZTBANK_DB_AUTH=passwordfile",
			"ZTBANK_DB_PASSWORD_FILE="+pwFile)
	}
	if err := s.rotateAll(ctx); err != nil {
		return err
	}
	rotCtx, cancel := context.WithCancel(context.Background())
	s.stopRotation = cancel
	go s.rotateEvery(rotCtx, CredentialTTL/3)
	return nil
}

type rotation struct{ role, db, file string }

func (s *Stack) rotateAll(ctx context.Context) error {
	// Two rotations interleaved could leave a file holding the password the other one
	// replaced in the database.
	s.rotateMu.Lock()
	defer s.rotateMu.Unlock()
	pool, err := pgxpool.New(ctx, s.pg.AdminDSN("postgres"))
	if err != nil {
		return err
	}
	defer pool.Close()
	for _, r := range s.rotations {
		if _, err := passwordfile.Rotate(ctx, pool, r.role, r.file, CredentialTTL); err != nil {
			return fmt.Errorf("rotate %s: %w", r.role, err)
		}
	}
	return nil
}

// rotateEvery keeps the service passwords fresh for as long as the stack runs. A failed
// rotation is logged and retried sooner: the old password still has two thirds of its life.
func (s *Stack) rotateEvery(ctx context.Context, every time.Duration) {
	t := time.NewTimer(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		next := every
		if err := s.rotateAll(ctx); err != nil && ctx.Err() == nil {
			s.opts.progress("password rotation failed, retrying in 30s: %v", err)
			next = 30 * time.Second
		}
		t.Reset(next)
	}
}

// RotateNow rotates every service password immediately (tests use it to prove that a
// rotation under load fails no request).
func (s *Stack) RotateNow(ctx context.Context) error { return s.rotateAll(ctx) }

// PostgresAdminDSN is the superuser DSN for a database, for tests and tools.
func (s *Stack) PostgresAdminDSN(db string) string { return s.pg.AdminDSN(db) }

func (s *Stack) stopPostgres() {
	if s.stopRotation != nil {
		s.stopRotation()
		s.stopRotation = nil
	}
	if s.pg != nil {
		s.pg.Stop()
		s.pg = nil
	}
}
