// Package migrate applies the numbered SQL migrations in migrations/ to each tenant database.
// Every migration runs in its own transaction as the database's owner role, is recorded with
// a checksum in public.schema_migrations, and is skipped when already applied, so running
// "up" twice is harmless and a migration edited after it ran is reported instead of ignored.
package migrate

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
)

// ErrChecksum is returned when an applied migration's file no longer matches what was run.
var ErrChecksum = errors.New("applied migration changed")

// Migration is one numbered step with its forward and reverse SQL.
type Migration struct {
	Version int
	Name    string
	Up      string
	Down    string
}

func (m Migration) checksum() []byte {
	s := sha256.Sum256([]byte(m.Up))
	return s[:]
}

var fileName = regexp.MustCompile(`^(\d{4})_([a-z0-9_]+)\.(up|down)\.sql$`)

// Load reads the migrations in directory dir of fsys. Every version needs both an up and a
// down file, versions must be unique, and unrelated files other than README.md are refused
// so a misnamed migration cannot be silently skipped.
func Load(fsys fs.FS, dir string) ([]Migration, error) {
	entries, err := fs.ReadDir(fsys, dir)
	if err != nil {
		return nil, fmt.Errorf("read migrations: %w", err)
	}
	byVersion := map[int]*Migration{}
	for _, e := range entries {
		if e.IsDir() || e.Name() == "README.md" {
			continue
		}
		m := fileName.FindStringSubmatch(e.Name())
		if m == nil {
			return nil, fmt.Errorf("migration file %s: name must be NNNN_name.up.sql or NNNN_name.down.sql", path.Join(dir, e.Name()))
		}
		v, _ := strconv.Atoi(m[1])
		b, err := fs.ReadFile(fsys, path.Join(dir, e.Name()))
		if err != nil {
			return nil, fmt.Errorf("read migration: %w", err)
		}
		mig := byVersion[v]
		if mig == nil {
			mig = &Migration{Version: v, Name: m[2]}
			byVersion[v] = mig
		}
		if mig.Name != m[2] {
			return nil, fmt.Errorf("migration %04d has two names: %s and %s", v, mig.Name, m[2])
		}
		if m[3] == "up" {
			mig.Up = string(b)
		} else {
			mig.Down = string(b)
		}
	}
	var out []Migration
	for _, m := range byVersion {
		if strings.TrimSpace(m.Up) == "" || strings.TrimSpace(m.Down) == "" {
			return nil, fmt.Errorf("migration %04d_%s needs non-empty up and down files", m.Version, m.Name)
		}
		out = append(out, *m)
	}
	slices.SortFunc(out, func(a, b Migration) int { return a.Version - b.Version })
	return out, nil
}

// Beginner is what a migration needs from a connection: *pgx.Conn and *pgxpool.Pool both fit.
type Beginner interface {
	Begin(ctx context.Context) (pgx.Tx, error)
}

// OwnerRole names the role that owns a tenant database and every object in it.
func OwnerRole(database string) string { return database + "_owner" }

// lockKey serialises concurrent migrators on one database (two dev stacks, a CI retry).
const lockKey = 0x7a7462616e6b // "ztbank"

// Up applies, in order, every migration not yet recorded, each in its own transaction
// running as owner. It returns the versions it applied.
func Up(ctx context.Context, db Beginner, owner string, migs []Migration) ([]int, error) {
	var applied []int
	for _, m := range migs {
		did, err := step(ctx, db, owner, func(ctx context.Context, tx pgx.Tx, done map[int][]byte) (bool, error) {
			if sum, ok := done[m.Version]; ok {
				if string(sum) != string(m.checksum()) {
					return false, fmt.Errorf("migration %04d_%s: %w since it was applied", m.Version, m.Name, ErrChecksum)
				}
				return false, nil
			}
			if _, err := tx.Exec(ctx, m.Up); err != nil {
				return false, fmt.Errorf("migration %04d_%s up: %w", m.Version, m.Name, err)
			}
			_, err := tx.Exec(ctx, `INSERT INTO public.schema_migrations (version, name, checksum) VALUES ($1, $2, $3)`,
				m.Version, m.Name, m.checksum())
			return true, err
		})
		if err != nil {
			return applied, err
		}
		if did {
			applied = append(applied, m.Version)
		}
	}
	return applied, nil
}

// Down reverts up to steps applied migrations, newest first, each in its own transaction.
// It returns the versions it reverted.
func Down(ctx context.Context, db Beginner, owner string, migs []Migration, steps int) ([]int, error) {
	var reverted []int
	for i := len(migs) - 1; i >= 0 && len(reverted) < steps; i-- {
		m := migs[i]
		did, err := step(ctx, db, owner, func(ctx context.Context, tx pgx.Tx, done map[int][]byte) (bool, error) {
			if _, ok := done[m.Version]; !ok {
				return false, nil
			}
			if _, err := tx.Exec(ctx, m.Down); err != nil {
				return false, fmt.Errorf("migration %04d_%s down: %w", m.Version, m.Name, err)
			}
			_, err := tx.Exec(ctx, `DELETE FROM public.schema_migrations WHERE version = $1`, m.Version)
			return true, err
		})
		if err != nil {
			return reverted, err
		}
		if did {
			reverted = append(reverted, m.Version)
		}
	}
	return reverted, nil
}

// Applied returns the versions recorded in db, in order.
func Applied(ctx context.Context, db Beginner, owner string) ([]int, error) {
	var out []int
	_, err := step(ctx, db, owner, func(ctx context.Context, tx pgx.Tx, done map[int][]byte) (bool, error) {
		for v := range done {
			out = append(out, v)
		}
		return false, nil
	})
	slices.Sort(out)
	return out, err
}

// step runs fn in a transaction as owner, holding the migration lock, with the applied
// versions read inside that same transaction so two migrators never both apply a version.
func step(ctx context.Context, db Beginner, owner string, fn func(context.Context, pgx.Tx, map[int][]byte) (bool, error)) (bool, error) {
	tx, err := db.Begin(ctx)
	if err != nil {
		return false, fmt.Errorf("begin migration: %w", err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, int64(lockKey)); err != nil {
		return false, fmt.Errorf("take migration lock: %w", err)
	}
	if _, err := tx.Exec(ctx, "SET LOCAL ROLE "+pgx.Identifier{owner}.Sanitize()); err != nil {
		return false, fmt.Errorf("become owner role %s: %w", owner, err)
	}
	if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS public.schema_migrations (
		version    integer PRIMARY KEY,
		name       text NOT NULL,
		checksum   bytea NOT NULL,
		applied_at timestamptz NOT NULL DEFAULT now())`); err != nil {
		return false, fmt.Errorf("create schema_migrations: %w", err)
	}
	rows, err := tx.Query(ctx, `SELECT version, checksum FROM public.schema_migrations`)
	if err != nil {
		return false, fmt.Errorf("read schema_migrations: %w", err)
	}
	done := map[int][]byte{}
	var v int
	var sum []byte
	if _, err := pgx.ForEachRow(rows, []any{&v, &sum}, func() error { done[v] = sum; return nil }); err != nil {
		return false, fmt.Errorf("read schema_migrations: %w", err)
	}
	did, err := fn(ctx, tx, done)
	if err != nil {
		return false, err
	}
	if err := tx.Commit(ctx); err != nil {
		return false, fmt.Errorf("commit migration: %w", err)
	}
	return did, nil
}
