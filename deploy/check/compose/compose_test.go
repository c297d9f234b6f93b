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

func check(t *testing.T, file string, register []byte) []string {
	t.Helper()
	p, err := compose.Load(context.Background(), file)
	if err != nil {
		return []string{err.Error()}
	}
	var out []string
	for _, err := range compose.Check(p, topology.Default(), register) {
		out = append(out, err.Error())
	}
	return out
}

func TestComposeFile(t *testing.T) {
	register, err := os.ReadFile(filepath.Join(root, "deploy", "compose", "spire", "register.sh"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range check(t, filepath.Join(root, "docker-compose.yml"), register) {
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
	register, err := os.ReadFile(filepath.Join(root, "deploy", "compose", "spire", "register.sh"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, old, new string
		register       func(string) string
		want           string
	}{
		{name: "Dockerfile typo", old: "deploy/docker/ledger.Dockerfile", new: "deploy/docker/ledgr.Dockerfile", want: "ledgr.Dockerfile does not exist"},
		{name: "healthcheck removed", old: "      test: [\"CMD\", \"/app/payment\", \"healthcheck\"]\n", new: "", want: "service bank-b-payment has no healthcheck"},
		{name: "unknown dependency", old: "      bank-a-gateway:\n        condition: service_started", new: "      bank-a-gatewy:\n        condition: service_started", want: `undefined service "bank-a-gatewy"`},
		{name: "mesh mode", old: "ZTBANK_TRANSPORT_MODE: direct", new: "ZTBANK_TRANSPORT_MODE: mesh", want: "is not in direct mTLS mode"},
		{name: "schema violation", old: "  read_only: true\n", new: "  read_only: yes please\n", want: "read_only"},
		{
			name: "wrong SPIFFE ID registered", register: func(s string) string {
				return strings.Replace(s, "register bank-b-ledger  ns/bank-b/sa/ledger", "register bank-b-ledger  ns/bank-a/sa/ledger", 1)
			},
			want: "service bank-b-ledger registers as ns/bank-a/sa/ledger",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body := string(src)
			if tc.old != "" {
				if !strings.Contains(body, tc.old) {
					t.Fatalf("compose file no longer contains %q; update this case", tc.old)
				}
				body = strings.Replace(body, tc.old, tc.new, 1)
			}
			reg := string(register)
			if tc.register != nil {
				reg = tc.register(reg)
				if reg == string(register) {
					t.Fatal("register edit did not apply")
				}
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
			got := check(t, f.Name(), []byte(reg))
			for _, g := range got {
				if strings.Contains(g, tc.want) {
					return
				}
			}
			t.Errorf("no error containing %q; got %q", tc.want, got)
		})
	}
}
