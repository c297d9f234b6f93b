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
		{"image build input typo", "deps=[src, 'libs', 'go.work'", "deps=[src, 'lib', 'go.work'", "dep lib does not exist"},
		{"image never tagged for Tilt", "docker tag ztbank/%s:dev $EXPECTED_REF", "docker tag ztbank/%s:dev $REF", "never tags $EXPECTED_REF"},
		{"SPIFFE IDs not gated on SPIRE", "objects=spiffe_ids, resource_deps=['spire-ready']", "objects=spiffe_ids", "does not wait for spire-ready"},
		{"workloads not gated on SPIFFE IDs", "deps = ['spiffe-ids']", "deps = []", "does not wait for its SPIFFE IDs"},
		{"dependency on a missing resource", "resource_deps=['postgres-admin-secret', 'postgres-tls']", "resource_deps=['postgres-secret', 'postgres-tls']", "depends on postgres-secret, which is not a resource"},
		{"one service not built", "SERVICES = ['edge', 'gateway', 'user', 'account', 'payment', 'ledger']", "SERVICES = ['edge', 'gateway', 'user', 'account', 'payment']", "runs ztbank/ledger:dev, which the Tiltfile does not build"},
		{"wrong package path", "./tools/dbadmin", "./tool/dbadmin", "package ./tool/dbadmin"},
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
