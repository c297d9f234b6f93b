// Package config is the payment binary's whole configuration, read from its environment in one
// place. main uses Load; the deploy contract test (tests/contract) runs the same Load on the
// environment every manifest gives the container, and docs/configuration.md is generated from Vars.
package config

import "github.com/ztbank/ztbank/libs/dbcred/fromenv"

// Service is the binary's name, which ZTBANK_WORKLOAD's topology entry must name.
const Service = "payment"

// Vars declares every variable the binary reads.
var Vars = fromenv.Vars

// Config is the binary's configuration: the shared service part and its database.
type Config = fromenv.Config

// Load reads and checks the configuration; errors are one line naming the variable.
func Load(getenv func(string) string) (Config, error) { return fromenv.Load(Service, getenv) }
