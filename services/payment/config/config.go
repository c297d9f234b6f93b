// Package config is the payment binary's whole configuration, read from its environment in one
// place. main uses Load; the deploy contract test (tests/contract) runs the same Load on the
// environment every manifest gives the container, and docs/configuration.md is generated from Vars.
package config

import (
	"fmt"
	"time"

	"github.com/ztbank/ztbank/libs/dbcred/fromenv"
	"github.com/ztbank/ztbank/libs/envvar"
	"github.com/ztbank/ztbank/services/payment/store"
)

// Service is the binary's name, which ZTBANK_WORKLOAD's topology entry must name.
const Service = "payment"

// FailAfterLedgerPost is the one failpoint: the process kills itself (SIGKILL, no clean-up)
// after the ledger has accepted a posting and before the payment records the outcome, the
// crash that recovery exists for. Only the crash tests set it.
const FailAfterLedgerPost = "after-ledger-post"

// PaymentVars declares the payment service's own variables.
var PaymentVars = []envvar.Var{
	{Name: "PAYMENT_RECOVER_EVERY", Default: store.DefaultRecoverEvery.String(), Doc: "how often pending payments nobody is working on are settled from the ledger (also once at start-up)."},
	{Name: "PAYMENT_LEASE", Default: store.DefaultLease.String(), Doc: "how long a request holds its Idempotency-Key (and may spend on the ledger call) before a retry or the recovery may take the payment over."},
	{Name: "PAYMENT_FAILPOINT", Default: "off", Doc: "tests only: " + FailAfterLedgerPost + " makes the process kill itself between the ledger's reply and the outcome write. Never set in a deployment."},
}

// Vars declares every variable the binary reads.
var Vars = envvar.Join(fromenv.Vars, PaymentVars)

// Config is the binary's configuration: the shared service part, its database and its own.
type Config struct {
	fromenv.Config
	// RecoverEvery is the period of the pending-payment recovery.
	RecoverEvery time.Duration
	// Lease is how long a request holds its key (store.WithLease).
	Lease time.Duration
	// Failpoint is "" (off) or FailAfterLedgerPost.
	Failpoint string
}

// Load reads and checks the configuration; errors are one line naming the variable.
func Load(getenv func(string) string) (Config, error) {
	base, err := fromenv.Load(Service, getenv)
	if err != nil {
		return Config{}, err
	}
	r := envvar.NewReader(getenv, PaymentVars)
	cfg := Config{Config: base, RecoverEvery: store.DefaultRecoverEvery, Lease: store.DefaultLease}
	for _, d := range []struct {
		name string
		dst  *time.Duration
	}{{"PAYMENT_RECOVER_EVERY", &cfg.RecoverEvery}, {"PAYMENT_LEASE", &cfg.Lease}} {
		if v := r.Get(d.name); v != "" {
			p, err := time.ParseDuration(v)
			if err != nil || p <= 0 {
				return Config{}, fmt.Errorf("%s %q: want a positive duration such as 15s", d.name, v)
			}
			*d.dst = p
		}
	}
	switch v := r.Get("PAYMENT_FAILPOINT"); v {
	case "", "off":
	case FailAfterLedgerPost:
		cfg.Failpoint = v
	default:
		return Config{}, fmt.Errorf("PAYMENT_FAILPOINT %q: want off or %s", v, FailAfterLedgerPost)
	}
	cfg.Read = append(cfg.Read, r.Read()...)
	return cfg, r.Err()
}
