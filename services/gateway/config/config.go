// Package config is the gateway binary's whole configuration, read from its environment in
// one place. main uses Load; the deploy contract test (tests/contract) runs the same Load on
// the environment every manifest gives the container, and docs/configuration.md is generated from Vars.
package config

import (
	"github.com/ztbank/ztbank/libs/envvar"
	"github.com/ztbank/ztbank/libs/server"
)

// Service is the binary's name, which ZTBANK_WORKLOAD's topology entry must name.
const Service = "gateway"

// Vars declares every variable the binary reads: the tenant service set (no database).
var Vars = server.TenantVars

// Config is the binary's configuration.
type Config struct {
	Server server.Config
	// Read lists every variable the loader read, set or not.
	Read []string
}

// Load reads and checks the configuration; errors are one line naming the variable.
func Load(getenv func(string) string) (Config, error) {
	r := envvar.NewReader(getenv, Vars)
	srv, err := server.LoadConfig(Service, r)
	if err != nil {
		return Config{}, err
	}
	return Config{Server: srv, Read: r.Read()}, r.Err()
}
