package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ztbank/ztbank/libs/dbcred"
	"github.com/ztbank/ztbank/libs/dbcred/passwordfile"
	"github.com/ztbank/ztbank/libs/topology"
	"github.com/ztbank/ztbank/tools/internal/admindsn"
)

// PasswordFile is where the rotator writes a service's password under -dir: one
// subdirectory per service, each its own volume, which that service alone mounts (at
// /run/ztbank/db), so no service can read another's password.
func PasswordFile(dir string, w topology.Workload) string {
	return filepath.Join(dir, w.Service, "password")
}

// rotate keeps one tenant's service passwords fresh for as long as the stack runs, as the
// local stack does in-process: each round sets a new random password valid for -ttl
// (PostgreSQL enforces the VALID UNTIL) and rounds run every -every, a third of the TTL by
// default, because a role has one password and the old one stops working at once.
func rotate(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("composeinit rotate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	tenant := fs.String("tenant", getenv("ZTBANK_TENANT"), "the `tenant` whose database roles to rotate")
	dsn := fs.String("dsn", getenv("ZTBANK_DB_ADMIN_DSN"), "admin connection `URL` (sslmode=verify-full; password from a passfile)")
	dir := fs.String("dir", envOr(getenv, "COMPOSEINIT_PASSWORD_DIR", "/run/ztbank/passwords"), "`directory` with one subdirectory (volume) per service")
	topoPath := fs.String("topology", getenv("ZTBANK_TOPOLOGY"), "topology `file` (default: the embedded one)")
	ttl := fs.Duration("ttl", dbcred.MaxCredentialLifetime, "password validity (at most 15m)")
	every := fs.Duration("every", 0, "rotation interval (default: a third of -ttl)")
	retry := fs.Duration("retry", 5*time.Second, "wait after a failed round (PostgreSQL restarting, say)")
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("%w: %w", errUsage, err)
	}
	if *every == 0 {
		*every = *ttl / 3
	}
	if *dsn == "" {
		return fmt.Errorf("%w: -dsn or $ZTBANK_DB_ADMIN_DSN is required", errUsage)
	}
	cfg, err := admindsn.Parse(*dsn)
	if err != nil {
		return fmt.Errorf("admin DSN: %w", err)
	}
	topo, err := topology.Load(*topoPath)
	if err != nil {
		return err
	}
	if _, ok := topo.Tenant(*tenant); !ok {
		return fmt.Errorf("%w: -tenant %q is not in the topology", errUsage, *tenant)
	}
	var roles []topology.Workload
	for _, w := range topo.Workloads {
		if w.Tenant == *tenant && w.DBRole != "" {
			if err := requireDir(filepath.Dir(PasswordFile(*dir, w))); err != nil {
				return err
			}
			roles = append(roles, w)
		}
	}
	round := func() error {
		callCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		// A fresh connection each round: PostgreSQL may have restarted since the last one.
		conn, err := pgx.ConnectConfig(callCtx, cfg.Copy())
		if err != nil {
			return fmt.Errorf("connect as admin: %w", err)
		}
		defer conn.Close(context.Background())
		for _, w := range roles {
			cred, err := passwordfile.Rotate(callCtx, conn, w.DBRole, PasswordFile(*dir, w), *ttl)
			if err != nil {
				return err
			}
			fmt.Fprintf(stdout, "%s: %s rotated, valid until %s\n", *tenant, w.DBRole, cred.ExpiresAt.UTC().Format(time.RFC3339))
		}
		return nil
	}
	for {
		next := *every
		if err := round(); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			fmt.Fprintf(stderr, "rotation failed, retrying in %s: %v\n", *retry, err)
			next = *retry
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(next):
		}
	}
}

// fresh is the rotator's healthcheck: every file exists and was written within -max-age.
func fresh(args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("composeinit fresh", flag.ContinueOnError)
	fs.SetOutput(stderr)
	maxAge := fs.Duration("max-age", 10*time.Minute, "oldest acceptable modification `age`")
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("%w: %w", errUsage, err)
	}
	if fs.NArg() == 0 {
		return fmt.Errorf("%w: fresh needs at least one file", errUsage)
	}
	var errs []error
	for _, f := range fs.Args() {
		fi, err := os.Stat(f)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if age := time.Since(fi.ModTime()); age > *maxAge {
			errs = append(errs, fmt.Errorf("%s is %s old (max %s)", f, age.Round(time.Second), *maxAge))
		}
	}
	return errors.Join(errs...)
}
