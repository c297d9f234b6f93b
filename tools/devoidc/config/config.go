// Package config is the devoidc binary's environment, read in one place. Flags given on the
// command line override it. main uses Load; the deploy contract test runs the same Load on
// the environment the kind overlay and compose give the container, and docs/configuration.md is
// generated from Vars.
package config

import (
	"fmt"
	"net"
	"net/url"

	"github.com/ztbank/ztbank/libs/envvar"
)

// Vars declares every variable the binary reads.
var Vars = []envvar.Var{
	{Name: "DEVOIDC_LISTEN", Default: "127.0.0.1:9900", Doc: "serve: the address to listen on (loopback unless DEVOIDC_ISSUER is http://)."},
	{Name: "DEVOIDC_STATE_DIR", Default: ".dev/oidc", Doc: "serve, healthcheck: directory for passwords.json, client-secrets.json and provider.json (keep it out of git)."},
	{Name: "DEVOIDC_ISSUER", Default: "https://<listen address>", Doc: "container mode: the issuer URL clients and the edge reach the provider by, e.g. http://devoidc:9998; an http:// issuer serves plain HTTP on any address."},
}

// Config is the provider's configuration from the environment.
type Config struct {
	Listen   string
	StateDir string
	Issuer   string
	// Read lists every variable the loader read, set or not.
	Read []string
}

// Load reads and checks the environment; errors are one line naming the variable.
func Load(getenv func(string) string) (Config, error) {
	r := envvar.NewReader(getenv, Vars)
	c := Config{
		Listen:   r.Or("DEVOIDC_LISTEN", "127.0.0.1:9900"),
		StateDir: r.Or("DEVOIDC_STATE_DIR", ".dev/oidc"),
		Issuer:   r.Get("DEVOIDC_ISSUER"),
	}
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		return Config{}, fmt.Errorf("DEVOIDC_LISTEN %q: want host:port", c.Listen)
	}
	if c.Issuer != "" {
		u, err := url.Parse(c.Issuer)
		if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
			return Config{}, fmt.Errorf("DEVOIDC_ISSUER %q: want an http:// or https:// URL", c.Issuer)
		}
	}
	c.Read = r.Read()
	return c, r.Err()
}
