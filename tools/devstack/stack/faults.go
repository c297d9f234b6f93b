package stack

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// The fault injections the chaos suite (tests/chaos) uses on a running stack. Killing a
// service is Service.Kill; the SPIRE agent and server are Spire.StopAgent/StartAgent and
// Spire.RestartServer.

// RestartPostgres stops PostgreSQL (pg_ctl stop: connections are closed) and starts the
// same cluster again on the same port, as a database failover or restart does. The services
// keep their pools; they must reconnect on their own.
func (s *Stack) RestartPostgres(ctx context.Context) error {
	if s.pg == nil {
		return fmt.Errorf("the stack runs no PostgreSQL")
	}
	port := s.pg.Port()
	if err := s.pg.Stop(); err != nil {
		return fmt.Errorf("stop PostgreSQL: %w", err)
	}
	c, err := s.startCluster(ctx)
	if err != nil {
		return fmt.Errorf("start PostgreSQL again: %w", err)
	}
	s.pg = c
	if c.Port() != port {
		return fmt.Errorf("PostgreSQL came back on port %d, not %d: the services' DSNs point at the old one", c.Port(), port)
	}
	return nil
}

// ExpirePasswords makes every service role's current password expire now and closes the
// roles' open connections, as if the rotation had stopped while each pool sat idle long
// enough to drop its connections: the next connection a pool opens presents an expired
// password. RotateNow (or the stack's own schedule) heals it.
func (s *Stack) ExpirePasswords(ctx context.Context) error {
	conn, err := pgx.Connect(ctx, s.pg.AdminDSN("postgres"))
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	for _, r := range s.rotations {
		if _, err := conn.Exec(ctx, fmt.Sprintf(`ALTER ROLE %s VALID UNTIL '-infinity'`, pgx.Identifier{r.role}.Sanitize())); err != nil {
			return fmt.Errorf("expire %s: %w", r.role, err)
		}
		if _, err := conn.Exec(ctx, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1`, r.role); err != nil {
			return fmt.Errorf("close %s connections: %w", r.role, err)
		}
	}
	return nil
}

// SetOIDCDown makes the development OIDC provider unreachable (true) or reachable again
// (false) without restarting it: tokens it issued stay valid, logins fail while it is down.
func (s *Stack) SetOIDCDown(down bool) error {
	p, ok := s.oidc.(interface{ SetDown(bool) })
	if !ok {
		return fmt.Errorf("the stack runs no OIDC provider that can go down")
	}
	p.SetDown(down)
	return nil
}
