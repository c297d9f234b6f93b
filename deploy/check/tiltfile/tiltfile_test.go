package tiltfile_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ztbank/ztbank/deploy/check/tiltfile"
)

var root = filepath.Join("..", "..", "..")

func TestTiltfile(t *testing.T) {
	r, err := tiltfile.Exec(root, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, err := range r.Check() {
		t.Error(err)
	}
	if len(r.Images) < 6 {
		t.Errorf("Tiltfile builds %d images, want one per service (6)", len(r.Images))
	}
}

// TestTiltfileDefectsAreCaught edits the real Tiltfile one mistake at a time and expects
// Check to report it.
func TestTiltfileDefectsAreCaught(t *testing.T) {
	src, err := os.ReadFile(filepath.Join(root, "Tiltfile"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, old, new, want string
	}{
		{"Dockerfile path typo", "deploy/docker/%s.Dockerfile", "deploy/dockers/%s.Dockerfile", "Dockerfile deploy/dockers/"},
		{"SPIFFE IDs not gated on SPIRE", "objects=spiffe_ids, resource_deps=['spire-ready']", "objects=spiffe_ids", "does not wait for spire-ready"},
		{"workloads not gated on SPIFFE IDs", "deps = ['spiffe-ids', name + '-binary']", "deps = [name + '-binary']", "does not wait for its SPIFFE IDs"},
		{"dependency on a missing resource", "resource_deps=['postgres-admin-secret']", "resource_deps=['postgres-secret']", "depends on postgres-secret, which is not a resource"},
		{"missing dev stage", "target='dev'", "target='debug'", `has no stage "debug"`},
		{"one service not built", "SERVICES = ['edge', 'gateway', 'user', 'account', 'payment', 'ledger']", "SERVICES = ['edge', 'gateway', 'user', 'account', 'payment']", "runs ztbank/ledger:dev, which the Tiltfile does not build"},
		{"wrong package path", "./services/%s", "./service/%s", "package ./service/"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if !strings.Contains(string(src), tc.old) {
				t.Fatalf("Tiltfile no longer contains %q; update this case", tc.old)
			}
			r, err := tiltfile.Exec(root, []byte(strings.Replace(string(src), tc.old, tc.new, 1)))
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, err := range r.Check() {
				got = append(got, err.Error())
				if strings.Contains(err.Error(), tc.want) {
					return
				}
			}
			t.Errorf("no error containing %q; got %q", tc.want, got)
		})
	}
}
