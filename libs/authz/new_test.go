package authz

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ztbank/ztbank/libs/topology"
)

// policyWith returns the embedded policy directory with files replaced (nil data removes
// the file), so a test can start an engine on a broken variant.
func policyWith(t testing.TB, replace map[string]*string) fstest.MapFS {
	t.Helper()
	fsys := fstest.MapFS{}
	entries, err := fs.ReadDir(embedded, ".")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		b, err := fs.ReadFile(embedded, e.Name())
		if err != nil {
			t.Fatal(err)
		}
		fsys[e.Name()] = &fstest.MapFile{Data: b}
	}
	for name, content := range replace {
		if content == nil {
			delete(fsys, name)
			continue
		}
		fsys[name] = &fstest.MapFile{Data: []byte(*content)}
	}
	return fsys
}

func ptr(s string) *string { return &s }

// withoutTenantRule is the embedded policy with both tenant checks cut out of the chain:
// the classic cross-tenant leak.
func withoutTenantRule(t testing.TB) string {
	t.Helper()
	b, err := fs.ReadFile(embedded, "authz.rego")
	if err != nil {
		t.Fatal(err)
	}
	src := string(b)
	for _, cut := range []string{
		"} else := {\"allow\": false, \"reason\": \"tenant_mismatch\"} if {\n\thas_user\n\tnot user_in_service_tenant\n",
		"} else := {\"allow\": false, \"reason\": \"tenant_mismatch\"} if {\n\tnot resource_in_service_tenant\n",
	} {
		if !strings.Contains(src, cut) {
			t.Fatalf("authz.rego no longer contains %q; update the test", cut)
		}
		src = strings.Replace(src, cut, "", 1)
	}
	return src
}

// TestNewRefusesBadPolicies checks that start-up fails, with an error naming the problem,
// for policies that do not load, do not compile or fail the self-test.
func TestNewRefusesBadPolicies(t *testing.T) {
	const alwaysAllow = "package ztbank.authz\n\ndecision := {\"allow\": true, \"reason\": \"allowed\"}\n"
	const alwaysDeny = "package ztbank.authz\n\ndecision := {\"allow\": false, \"reason\": \"closed\"}\n"
	for _, tc := range []struct {
		name   string
		policy fs.FS
		want   []string
	}{
		{"syntax error", policyWith(t, map[string]*string{"authz.rego": ptr("package ztbank.authz\n\ndecision := {\"allow\": true,\n")}),
			[]string{"override policy does not parse", "authz.rego:"}},
		{"undefined function", policyWith(t, map[string]*string{"authz.rego": ptr("package ztbank.authz\n\ndecision := no_such_function(input)\n")}),
			[]string{"override policy does not compile", "authz.rego:3", "no_such_function"}},
		{"always allow", policyWith(t, map[string]*string{"authz.rego": ptr(alwaysAllow)}),
			[]string{"failed its self-test for bank-b/ledger", "customer reads a neighbour's resource: want deny, policy allowed", "staff moves money: want deny, policy allowed"}},
		{"always deny", policyWith(t, map[string]*string{"authz.rego": ptr(alwaysDeny)}),
			[]string{"customer reads own resource: want allow, policy denied (closed)"}},
		{"tenant rule removed", policyWith(t, map[string]*string{"authz.rego": ptr(withoutTenantRule(t))}),
			[]string{"staff reads a resource of another tenant: want deny, policy allowed", "staff of another tenant reads: want deny, policy allowed"}},
		{"decision of the wrong shape", policyWith(t, map[string]*string{"authz.rego": ptr("package ztbank.authz\n\ndecision := true\n")}),
			[]string{"decision is bool, not an object"}},
		{"no permission table", policyWith(t, map[string]*string{DataFile: nil}),
			[]string{"has no data.json"}},
		{"no modules", fstest.MapFS{DataFile: &fstest.MapFile{Data: []byte(`{}`)}},
			[]string{"has no .rego modules"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			topo := topology.Default()
			w, _ := topo.Workload("bank-b/ledger")
			_, err := New(t.Context(), Service{Workload: w.Name, Tenant: w.Tenant, ID: w.ID}, topo,
				WithPolicy(tc.policy), WithAuditWriter(io.Discard), WithRegisterer(prometheus.NewRegistry()))
			if !errors.Is(err, ErrPolicy) {
				t.Fatalf("New() = %v, want an ErrPolicy", err)
			}
			for _, want := range tc.want {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("New() error does not mention %q:\n%v", want, err)
				}
			}
		})
	}
}

// TestNewRefusesBadService checks the service must match the topology.
func TestNewRefusesBadService(t *testing.T) {
	topo := topology.Default()
	ledger, _ := topo.Workload("bank-b/ledger")
	for _, tc := range []struct {
		name string
		svc  Service
		want string
	}{
		{"unknown workload", Service{Workload: "bank-b/vault", Tenant: "bank-b"}, "not in the topology"},
		{"wrong tenant", Service{Workload: "bank-b/ledger", Tenant: "bank-a"}, `serves tenant "bank-b"`},
		{"wrong ID", Service{Workload: "bank-b/ledger", Tenant: "bank-b", ID: topo.Workloads[0].ID}, "has SPIFFE ID"},
		{"platform workload", Service{Workload: "edge", Tenant: ""}, "serves tenant"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(t.Context(), tc.svc, topo, WithAuditWriter(io.Discard), WithRegisterer(prometheus.NewRegistry()))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("New() = %v, want an error containing %q", err, tc.want)
			}
		})
	}
	if _, err := New(t.Context(), Service{Workload: ledger.Name, Tenant: ledger.Tenant}, topo, WithAuditWriter(io.Discard), WithRegisterer(prometheus.NewRegistry())); err != nil {
		t.Errorf("New(ID from topology) = %v", err)
	}
}

// TestOptionsFromEnv checks the test-only switches the isolation suite uses: a policy
// directory is self-tested like the embedded one, and only with the explicit unsafe switch
// does a leaky policy start, and then it really leaks.
func TestOptionsFromEnv(t *testing.T) {
	dir := t.TempDir()
	for name, f := range policyWith(t, map[string]*string{"authz.rego": ptr(withoutTenantRule(t))}) {
		if err := os.WriteFile(filepath.Join(dir, name), f.Data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	env := func(kv map[string]string) func(string) string { return func(k string) string { return kv[k] } }
	topo := topology.Default()
	svc := Service{Workload: "bank-b/ledger", Tenant: "bank-b"}
	start := func(getenv func(string) string) (*Engine, error) {
		opts, err := OptionsFromEnv(getenv)
		if err != nil {
			return nil, err
		}
		return New(t.Context(), svc, topo, append(opts, WithAuditWriter(io.Discard), WithRegisterer(prometheus.NewRegistry()))...)
	}

	if e, err := start(env(nil)); err != nil || !strings.HasPrefix(e.Revision(), "embedded:") {
		t.Fatalf("no variables: engine %v, err %v; want the embedded policy", e, err)
	}
	if _, err := start(env(map[string]string{EnvPolicyDir: dir})); !errors.Is(err, ErrPolicy) {
		t.Errorf("leaky policy directory: err = %v, want the self-test to refuse it", err)
	}
	if _, err := start(env(map[string]string{EnvUnsafeSkipSelfTest: "1"})); err == nil {
		t.Errorf("skip without a policy directory was accepted; the embedded policy must always be self-tested")
	}
	if _, err := start(env(map[string]string{EnvPolicyDir: filepath.Join(dir, "missing")})); err == nil {
		t.Errorf("missing policy directory was accepted")
	}
	e, err := start(env(map[string]string{EnvPolicyDir: dir, EnvUnsafeSkipSelfTest: "1"}))
	if err != nil {
		t.Fatalf("leaky policy with the unsafe switch: %v", err)
	}
	if !strings.HasPrefix(e.Revision(), "override:") {
		t.Errorf("revision %q does not show the override", e.Revision())
	}
	in := typicalInput(t)
	in.Caller = workloadID(t, "bank-b/payment")
	in.User, in.Tenant, in.Roles = userID("bank-b", "sam"), "bank-b", []string{"staff"}
	in.Resource = &Resource{Owner: userID("bank-a", "bob"), Tenant: "bank-a"}
	if d := e.Decide(t.Context(), in); !d.Allow {
		t.Errorf("the leaky policy denied a cross-tenant read (%+v); the isolation suite could not observe the leak", d)
	}
}
