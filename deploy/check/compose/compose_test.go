package compose_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ztbank/ztbank/deploy/check/compose"
	"github.com/ztbank/ztbank/libs/topology"
)

var root = filepath.Join("..", "..", "..")

func check(t *testing.T, file string) []string {
	t.Helper()
	p, err := compose.Load(context.Background(), file)
	if err != nil {
		return []string{err.Error()}
	}
	var out []string
	for _, err := range compose.Check(p, topology.Default()) {
		out = append(out, err.Error())
	}
	return out
}

func TestComposeFile(t *testing.T) {
	for _, e := range check(t, filepath.Join(root, "docker-compose.yml")) {
		t.Error(e)
	}
}

// TestComposeDefectsAreCaught writes a broken copy of the compose file next to the real one
// (so relative paths still resolve) and expects each defect to be reported.
func TestComposeDefectsAreCaught(t *testing.T) {
	src, err := os.ReadFile(filepath.Join(root, "docker-compose.yml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, old, new string
		want           string
	}{
		{name: "unpinned image", old: "image: ztbank/ledger:dev", new: "image: ztbank/ledger", want: "needs a pinned tag"},
		{name: "healthcheck removed", old: "      test: [\"CMD\", \"/app/payment\", \"healthcheck\"]\n", new: "", want: "service bank-b-payment has no healthcheck"},
		{name: "unknown dependency", old: "      bank-a-dbcreds:\n        condition: service_healthy", new: "      bank-a-dbcredz:\n        condition: service_healthy", want: `undefined service "bank-a-dbcredz"`},
		{name: "mesh mode", old: "ZTBANK_TRANSPORT_MODE: direct", new: "ZTBANK_TRANSPORT_MODE: mesh", want: "is not in direct mTLS mode"},
		{name: "schema violation", old: "  read_only: true\n", new: "  read_only: yes please\n", want: "read_only"},
		{name: "another workload's label", old: "org.ztbank.workload: bank-b/ledger", new: "org.ztbank.workload: bank-a/account", want: "both carry org.ztbank.workload=bank-a/account"},
		{name: "edge replica off the edge's namespace", old: "network_mode: \"service:edge\"\n    environment:\n      <<: [*service-env", new: "environment:\n      <<: [*service-env", want: "runs in two services"},
		{name: "label missing", old: "      org.ztbank.workload: bank-b/gateway\n", new: "      org.ztbank.other: bank-b/gateway\n", want: "service bank-b-gateway (bank-b/gateway) is labelled"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body := string(src)
			if tc.old != "" {
				if !strings.Contains(body, tc.old) {
					t.Fatalf("compose file no longer contains %q; update this case", tc.old)
				}
				body = strings.Replace(body, tc.old, tc.new, 1)
			}
			f, err := os.CreateTemp(root, ".compose-defect-*.yml")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { os.Remove(f.Name()) })
			if _, err := f.WriteString(body); err != nil {
				t.Fatal(err)
			}
			f.Close()
			got := check(t, f.Name())
			for _, g := range got {
				if strings.Contains(g, tc.want) {
					return
				}
			}
			t.Errorf("no error containing %q; got %q", tc.want, got)
		})
	}
}
