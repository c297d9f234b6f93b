package contract

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// repo is the repository root, relative to this package.
const repo = "../.."

// kindOutside are the Secrets the kind overlay uses that Tilt creates at `tilt up` (random
// admin password, the database CA and server certificate, the rotated per-service passwords),
// with the keys Tilt gives them. TestKindOutsideSecretsComeFromTilt keeps the list honest.
var kindOutside = Outside{
	"ztbank-system/postgres-admin": {"password"},
	"ztbank-system/postgres-tls":   {"tls.crt", "tls.key"},
	"*/ztbank-db-ca":               {"ca.pem"},
	"*/ztbank-db-password-*":       {"password"},
}

func renderings(t *testing.T) map[string]*Rendering {
	t.Helper()
	out := map[string]*Rendering{}
	for _, tc := range []struct {
		name    string
		dir     string
		outside Outside
	}{
		{"kind", "deploy/k8s/overlays/kind", kindOutside},
		{"eks", "deploy/k8s/overlays/eks", nil},
	} {
		objs, err := Kustomize(filepath.Join(repo, tc.dir))
		if err != nil {
			t.Fatal(err)
		}
		r, err := FromKubernetes(tc.name, objs, tc.outside, t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		out[tc.name] = r
	}
	return out
}

// TestDeployContract is the contract itself: every rendering loads and resolves cleanly.
func TestDeployContract(t *testing.T) {
	for name, r := range renderings(t) {
		t.Run(name, func(t *testing.T) {
			ours := 0
			for _, c := range r.Containers {
				if c.Binary != "" {
					ours++
				}
			}
			// Six banking workloads and the edge at least; a rendering that lost its workloads
			// would otherwise pass with nothing to check.
			if ours < 7 {
				t.Fatalf("%s renders %d containers of ours, want at least 7", name, ours)
			}
			for _, p := range Check(r) {
				t.Errorf("%s: %s", name, p)
			}
		})
	}
}

// TestKindOutsideSecretsComeFromTilt: every Secret the contract lets the kind overlay take
// from outside the rendering is one the Tiltfile creates.
func TestKindOutsideSecretsComeFromTilt(t *testing.T) {
	tilt, err := os.ReadFile(filepath.Join(repo, "Tiltfile"))
	if err != nil {
		t.Fatal(err)
	}
	for pat := range kindOutside {
		_, name, _ := strings.Cut(pat, "/")
		stem := strings.TrimSuffix(name, "*")
		if !strings.Contains(string(tilt), stem) {
			t.Errorf("the contract takes Secret %s from outside the kind rendering, but the Tiltfile never names %q", pat, stem)
		}
	}
}
