// Package config is the dbadmin binary's environment, read in one place; command-line flags
// override it. main uses Load; the deploy contract test runs the same Load on the environment
// compose and the manifests give the migration container, and docs/configuration.md is generated from
// Vars.
package config

import (
	"fmt"

	"github.com/ztbank/ztbank/libs/envvar"
	"github.com/ztbank/ztbank/tools/internal/admindsn"
)

// Vars declares every variable the binary reads.
var Vars = []envvar.Var{
	{Name: "ZTBANK_DB_ADMIN_DSN", Doc: "admin connection URL with sslmode=verify-full; its password may come from a passfile= parameter (required unless -dsn is given)."},
	{Name: "ZTBANK_TOPOLOGY", Default: "the topology compiled into the binary", Doc: "path of a topology file to use instead."},
	{Name: "ZTBANK_MIGRATIONS_DIR", Default: "migrations", Doc: "directory of the numbered up/down SQL files."},
	{Name: "ZTBANK_TENANT", Default: "every tenant", Doc: "only this tenant's database and roles (a cluster per tenant, as in compose)."},
}

// Config is dbadmin's configuration from the environment.
type Config struct {
	AdminDSN      string
	TopologyPath  string
	MigrationsDir string
	Tenant        string
	// Read lists every variable the loader read, set or not.
	Read []string
}

// Load reads and checks the environment; errors are one line naming the variable.
func Load(getenv func(string) string) (Config, error) {
	r := envvar.NewReader(getenv, Vars)
	c := Config{
		AdminDSN:      r.Get("ZTBANK_DB_ADMIN_DSN"),
		TopologyPath:  r.Get("ZTBANK_TOPOLOGY"),
		MigrationsDir: r.Or("ZTBANK_MIGRATIONS_DIR", "migrations"),
		Tenant:        r.Get("ZTBANK_TENANT"),
		Read:          r.Read(),
	}
	if c.AdminDSN != "" {
		if _, err := admindsn.Parse(c.AdminDSN); err != nil {
			return Config{}, fmt.Errorf("ZTBANK_DB_ADMIN_DSN: %w", err)
		}
	}
	return c, r.Err()
}
