package dockerfile_test

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/ztbank/ztbank/deploy/check/dockerfile"
	"github.com/ztbank/ztbank/deploy/check/tiltfile"
)

var root = filepath.Join("..", "..", "..")

func pkgExists(p string) bool {
	if _, err := os.Stat(filepath.Join(root, p)); err == nil {
		return true
	}
	return slices.Contains(tiltfile.Binaries, p)
}

func TestDockerfiles(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(root, "deploy", "docker", "*.Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != len(tiltfile.Binaries) {
		t.Errorf("have %d Dockerfiles, want one per binary (%d)", len(files), len(tiltfile.Binaries))
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, err := range dockerfile.Check(filepath.Base(f), b, pkgExists) {
			t.Error(err)
		}
	}
}

func TestDockerfileDefectsAreCaught(t *testing.T) {
	src, err := os.ReadFile(filepath.Join(root, "deploy", "docker", "ledger.Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, old, new, want string }{
		{"root user", "/etc/passwd.\nUSER 65532:65532", "/etc/passwd.\nUSER 0", "numeric non-root USER"},
		{"final stage with shell", "static-debian12:nonroot AS prod", "static-debian12:debug-nonroot AS prod", "has a shell"},
		{"cgo on", "CGO_ENABLED=0 ", "CGO_ENABLED=1 ", "CGO_ENABLED=0"},
		{"unpinned builder", "golang:1.26-bookworm", "golang", "not pinned"},
		{"wrong package", "-o /out/ledger ./services/ledger", "-o /out/ledger ./services/ledgr", "./services/ledgr, which does not exist"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if !strings.Contains(string(src), tc.old) {
				t.Fatalf("Dockerfile no longer contains %q", tc.old)
			}
			errs := dockerfile.Check("ledger.Dockerfile", []byte(strings.Replace(string(src), tc.old, tc.new, 1)), pkgExists)
			for _, err := range errs {
				if strings.Contains(err.Error(), tc.want) {
					return
				}
			}
			t.Errorf("no error containing %q; got %v", tc.want, errs)
		})
	}
}
