// Command dbadmin runs the database steps of the local stack and of deployments: applying
// and reverting migrations, seeding the demo data and rotating a service role's password.
//
//	dbadmin migrate up|down [-steps N]   apply (or revert N) migrations in every tenant database
//	dbadmin seed                         load the demo users and accounts (devkit/demo)
//	dbadmin rotate -role R -file F       give R a new password valid for -ttl and write it to F
//
// Every subcommand takes -dsn (or $ZTBANK_DB_ADMIN_DSN): an admin connection URL with
// sslmode=verify-full to any database of the cluster; its password may come from a
// passfile= parameter instead of the URL. -tenant (or $ZTBANK_TENANT) limits migrate and
// seed to one tenant's database and roles, for deployments with a cluster per tenant
// (docker-compose).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ztbank/ztbank/devkit/demo/seed"
	"github.com/ztbank/ztbank/libs/dbcred"
	"github.com/ztbank/ztbank/libs/dbcred/passwordfile"
	"github.com/ztbank/ztbank/libs/migrate"
	"github.com/ztbank/ztbank/libs/topology"
	"github.com/ztbank/ztbank/tools/dbadmin/config"
	"github.com/ztbank/ztbank/tools/internal/admindsn"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args, os.Getenv, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintf(os.Stderr, "dbadmin: %s\n", oneLine(err))
		os.Exit(1)
	}
}

const usage = `usage: dbadmin migrate up|down [-steps N] | seed | rotate -role ROLE -file PATH [-ttl 15m]
  common flags: -dsn ADMIN_DSN ($ZTBANK_DB_ADMIN_DSN), -topology FILE ($ZTBANK_TOPOLOGY),
  -tenant NAME ($ZTBANK_TENANT: only that tenant's database and roles)`

// errUsage marks errors the user fixes by reading the usage text.
var errUsage = errors.New("usage")

// run parses args (args[0] is the program name) and runs one subcommand.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) < 2 {
		return fmt.Errorf("%w: no subcommand\n%s", errUsage, usage)
	}
	cmd, rest := args[1], args[2:]
	if cmd == "migrate" {
		if len(rest) == 0 || (rest[0] != "up" && rest[0] != "down") {
			return fmt.Errorf("%w: migrate needs up or down\n%s", errUsage, usage)
		}
		cmd, rest = "migrate "+rest[0], rest[1:]
	}
	env, err := config.Load(getenv)
	if err != nil {
		return err
	}
	fs := flag.NewFlagSet("dbadmin "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	dsn := fs.String("dsn", env.AdminDSN, "admin connection URL (sslmode=verify-full)")
	topoPath := fs.String("topology", env.TopologyPath, "topology file (default: the embedded one)")
	dir := fs.String("dir", env.MigrationsDir, "migrations directory")
	steps := fs.Int("steps", 1, "migrations to revert per database (migrate down)")
	role := fs.String("role", "", "service role to rotate")
	file := fs.String("file", "", "password file to write (mode 0600)")
	ttl := fs.Duration("ttl", dbcred.MaxCredentialLifetime, "password validity (at most 15m)")
	tenant := fs.String("tenant", env.Tenant, "only this tenant's database and roles (a cluster per tenant)")
	if err := fs.Parse(rest); err != nil {
		return fmt.Errorf("%w: %w", errUsage, err)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected arguments %q", errUsage, fs.Args())
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
	if *tenant != "" {
		if topo, err = onlyTenant(topo, *tenant); err != nil {
			return err
		}
	}
	switch cmd {
	case "migrate up":
		if err := migrate.UpAll(ctx, *dsn, topo, os.DirFS(*dir)); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "migrations applied to %s\n", databases(topo))
	case "migrate down":
		if *steps < 1 {
			return fmt.Errorf("%w: -steps must be at least 1", errUsage)
		}
		if err := migrate.DownAll(ctx, *dsn, topo, os.DirFS(*dir), *steps); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "reverted up to %d migration(s) in %s\n", *steps, databases(topo))
	case "seed":
		if err := seed.Run(ctx, *dsn, topo); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "demo data seeded in %s\n", databases(topo))
	case "rotate":
		if *role == "" || *file == "" {
			return fmt.Errorf("%w: rotate needs -role and -file", errUsage)
		}
		conn, err := pgx.ConnectConfig(ctx, cfg)
		if err != nil {
			return fmt.Errorf("connect as admin: %w", err)
		}
		defer conn.Close(context.Background())
		cred, err := passwordfile.Rotate(ctx, conn, *role, *file, *ttl)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%s: new password in %s, valid until %s\n", *role, *file, cred.ExpiresAt.UTC().Format(time.RFC3339))
	default:
		return fmt.Errorf("%w: unknown subcommand %q\n%s", errUsage, cmd, usage)
	}
	return nil
}

// onlyTenant narrows the topology to one tenant and its workloads, which is all that
// migrate (Bootstrap, UpAll, DownAll) and seed read, so a cluster that serves one tenant gets
// that tenant's database and roles and nothing of the others'.
func onlyTenant(t *topology.Topology, name string) (*topology.Topology, error) {
	tn, ok := t.Tenant(name)
	if !ok {
		return nil, fmt.Errorf("%w: -tenant %q is not in the topology", errUsage, name)
	}
	sub := &topology.Topology{TrustDomain: t.TrustDomain, PlatformNamespace: t.PlatformNamespace, Tenants: []topology.Tenant{tn}}
	for _, w := range t.Workloads {
		if w.Tenant == name {
			sub.Workloads = append(sub.Workloads, w)
		}
	}
	return sub, nil
}

func databases(t *topology.Topology) string {
	var names []string
	for _, tn := range t.Tenants {
		names = append(names, tn.Database)
	}
	return strings.Join(names, ", ")
}

// oneLine keeps a failure to one line unless it is a usage error, whose text is the help.
func oneLine(err error) string {
	if errors.Is(err, errUsage) {
		return err.Error()
	}
	return strings.Join(strings.Fields(err.Error()), " ")
}
