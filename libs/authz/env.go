package authz

import (
	"fmt"
	"os"

	"github.com/ztbank/ztbank/libs/envvar"
)

// Environment variables read by OptionsFromEnv. Both are for tests only.
const (
	// EnvPolicyDir names a directory whose *.rego files and data.json replace the embedded
	// policy. TEST ONLY: the isolation suite uses it to run a service with a deliberately
	// broken policy (for example one without the tenant rule) and prove it notices. The
	// replaced policy is still self-tested, and its audit lines carry an "override:" revision.
	EnvPolicyDir = "ZTBANK_AUTHZ_POLICY_DIR"
	// EnvUnsafeSkipSelfTest, set to "1" together with EnvPolicyDir, starts the service even
	// when the replaced policy fails its self-test. TEST ONLY, and refused without
	// EnvPolicyDir so that the embedded policy is always self-tested.
	EnvUnsafeSkipSelfTest = "ZTBANK_AUTHZ_UNSAFE_SKIP_SELFTEST"
)

// OptionsFromEnv returns the options the test-only environment variables ask for; none in a
// normal deployment. Services pass their getenv so tests can run them with a broken policy.
func OptionsFromEnv(getenv func(string) string) ([]Option, error) {
	dir, skip := getenv(EnvPolicyDir), getenv(EnvUnsafeSkipSelfTest)
	var opts []Option
	if dir != "" {
		if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
			return nil, fmt.Errorf("authz: %s=%q is not a readable directory", EnvPolicyDir, dir)
		}
		opts = append(opts, WithPolicy(os.DirFS(dir)))
	}
	switch skip {
	case "", "0":
	case "1":
		if dir == "" {
			return nil, fmt.Errorf("authz: %s is honoured only with %s; the embedded policy is always self-tested", EnvUnsafeSkipSelfTest, EnvPolicyDir)
		}
		opts = append(opts, WithoutSelfTest())
	default:
		return nil, fmt.Errorf("authz: %s=%q: want 1 or unset", EnvUnsafeSkipSelfTest, skip)
	}
	return opts, nil
}

// Vars declares the variables OptionsFromEnv reads.
var Vars = []envvar.Var{
	{Name: EnvPolicyDir, Doc: "TEST ONLY, tenant services: directory whose *.rego and data.json replace the embedded policy (still self-tested)."},
	{Name: EnvUnsafeSkipSelfTest, Doc: "TEST ONLY, tenant services: 1 starts even when the replaced policy fails its self-test; refused without ZTBANK_AUTHZ_POLICY_DIR."},
}
