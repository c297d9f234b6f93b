package migrate

import (
	"context"
	"errors"
	"fmt"
	"io/fs"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/ztbank/ztbank/libs/topology"
)

// Bootstrap creates, when missing, what migrations cannot create from inside a tenant
// database: per tenant a NOLOGIN owner role and the database it owns, and per workload with a
// database role a LOGIN role without any password. Locally the password comes from rotation
// (libs/dbcred/passwordfile); on RDS the role is granted rds_iam instead. admin must be
// connected as a role with CREATEDB and CREATEROLE (the superuser locally, the RDS master
// user in the cloud).
func Bootstrap(ctx context.Context, admin *pgx.Conn, topo *topology.Topology) error {
	for _, t := range topo.Tenants {
		owner := OwnerRole(t.Database)
		if err := ensureRole(ctx, admin, owner, "NOLOGIN"); err != nil {
			return err
		}
		// Lets a non-superuser admin (RDS) SET ROLE to the owner while migrating.
		if _, err := admin.Exec(ctx, "GRANT "+ident(owner)+" TO CURRENT_USER"); err != nil && !isCode(err, "0LP01") {
			return fmt.Errorf("grant %s to admin: %w", owner, err)
		}
		var exists bool
		if err := admin.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)`, t.Database).Scan(&exists); err != nil {
			return fmt.Errorf("look up database %s: %w", t.Database, err)
		}
		if !exists {
			_, err := admin.Exec(ctx, "CREATE DATABASE "+ident(t.Database)+" OWNER "+ident(owner)+" ENCODING 'UTF8' TEMPLATE template0")
			if err != nil && !isCode(err, "42P04") {
				return fmt.Errorf("create database %s: %w", t.Database, err)
			}
		}
	}
	for _, w := range topo.Workloads {
		if w.DBRole == "" {
			continue
		}
		if err := ensureRole(ctx, admin, w.DBRole, "LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS"); err != nil {
			return err
		}
	}
	return nil
}

func ensureRole(ctx context.Context, admin *pgx.Conn, role, attrs string) error {
	var exists bool
	if err := admin.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)`, role).Scan(&exists); err != nil {
		return fmt.Errorf("look up role %s: %w", role, err)
	}
	if exists {
		return nil
	}
	// 42710: a concurrent bootstrap created it first, which is as good.
	if _, err := admin.Exec(ctx, "CREATE ROLE "+ident(role)+" "+attrs); err != nil && !isCode(err, "42710") {
		return fmt.Errorf("create role %s: %w", role, err)
	}
	return nil
}

// UpAll bootstraps the cluster and applies migrations/<database> to every tenant database.
// adminDSN may name any database the admin can reach; each tenant's connection is derived
// from it by swapping the database name.
func UpAll(ctx context.Context, adminDSN string, topo *topology.Topology, migrations fs.FS) error {
	cfg, err := pgx.ParseConfig(adminDSN)
	if err != nil {
		return fmt.Errorf("parse admin DSN: %w", err)
	}
	admin, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return fmt.Errorf("connect as admin: %w", err)
	}
	defer admin.Close(context.Background())
	if err := Bootstrap(ctx, admin, topo); err != nil {
		return err
	}
	return forEachTenant(ctx, cfg, topo, migrations, func(conn *pgx.Conn, t topology.Tenant, migs []Migration) error {
		_, err := Up(ctx, conn, OwnerRole(t.Database), migs)
		return err
	})
}

// DownAll reverts up to steps migrations in every tenant database, leaving roles and
// databases in place.
func DownAll(ctx context.Context, adminDSN string, topo *topology.Topology, migrations fs.FS, steps int) error {
	cfg, err := pgx.ParseConfig(adminDSN)
	if err != nil {
		return fmt.Errorf("parse admin DSN: %w", err)
	}
	return forEachTenant(ctx, cfg, topo, migrations, func(conn *pgx.Conn, t topology.Tenant, migs []Migration) error {
		_, err := Down(ctx, conn, OwnerRole(t.Database), migs, steps)
		return err
	})
}

func forEachTenant(ctx context.Context, cfg *pgx.ConnConfig, topo *topology.Topology, migrations fs.FS, fn func(*pgx.Conn, topology.Tenant, []Migration) error) error {
	for _, t := range topo.Tenants {
		migs, err := Load(migrations, t.Database)
		if err != nil {
			return fmt.Errorf("tenant %s: %w", t.Name, err)
		}
		c := cfg.Copy()
		c.Database = t.Database
		conn, err := pgx.ConnectConfig(ctx, c)
		if err != nil {
			return fmt.Errorf("tenant %s: connect to %s: %w", t.Name, t.Database, err)
		}
		err = fn(conn, t, migs)
		conn.Close(context.Background())
		if err != nil {
			return fmt.Errorf("tenant %s: %w", t.Name, err)
		}
	}
	return nil
}

func ident(s string) string { return pgx.Identifier{s}.Sanitize() }

func isCode(err error, code string) bool {
	var pg *pgconn.PgError
	return errors.As(err, &pg) && pg.Code == code
}
