package main

import (
	"archive/tar"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// TestDockerignore builds, with a real `docker build`, a context holding the repository's
// .dockerignore and planted local and secret files, then lists what reached the image: only
// the ordinary files may be there. The classic builder is used because it is what this
// engine has; BuildKit reads .dockerignore with the same pattern matcher.
func TestDockerignore(t *testing.T) {
	requireDocker(t)
	ignore, err := os.ReadFile(filepath.Join("..", "..", ".dockerignore"))
	if err != nil {
		t.Fatal(err)
	}
	planted := []struct {
		path string
		kept bool
	}{
		{"Dockerfile", true},
		{".dockerignore", true},
		{"go.work", true},
		{"go.work.sum", true},
		{"tests/go.mod", true}, // go.work names it: the workspace build needs it
		{"tests/e2e/coverage_test.go", true},
		{"coverage.html", false},
		{"libs/topology/topology.yaml", true},
		{"libs/authz/policy/authz.rego", true}, // embedded files must stay in
		{"services/edge/main.go", true},
		{"tools/composeinit/secrets.go", true}, // source whose name says secret is still source
		{"deploy/k8s/base/kustomization.yaml", true},
		{".dev/keys/ca.key", false},
		{".dev/db/passwords/user_svc", false},
		{".dev/stack.json", false},
		{".git/config", false},
		{".git/objects/ab/cdef", false},
		{"server.pem", false},
		{"server.key", false},
		{"deploy/certs/edge.crt", false},
		{"services/edge/testdata/leaf.pem", false},
		{"libs/deep/er/client.key", false},
		{"tools/x/store.p12", false},
		{".env", false},
		{"deploy/compose/.env.local", false},
		{"deploy/k8s/overlays/eks/settings.env", false},
		{"home/.ssh/id_ed25519", false},
		{"home/.netrc", false},
		{"cluster.kubeconfig", false},
		{"infra/terraform.tfstate", false},
		{"tools/images/images.test", false},
		{"tests/nested/.dev/token", false},
	}
	ctxDir := t.TempDir()
	var want []string
	for _, p := range planted {
		content := []byte("planted " + p.path + "\n")
		switch p.path {
		case ".dockerignore":
			content = ignore
		case "Dockerfile":
			content = []byte("FROM scratch\nCOPY . /ctx/\n")
		}
		full := filepath.Join(ctxDir, filepath.FromSlash(p.path))
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, content, 0o644); err != nil {
			t.Fatal(err)
		}
		if p.kept {
			want = append(want, "ctx/"+p.path)
		}
	}
	sort.Strings(want)

	tag := randomName(t, "ztbank-imgtest-dockerignore") + ":test"
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	build := exec.CommandContext(ctx, "docker", "build", "-q", "-t", tag, ctxDir)
	build.Env = append(os.Environ(), "DOCKER_BUILDKIT=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("docker build: %v\n%s", err, out)
	}
	t.Cleanup(func() { dockerCmd(context.Background(), "image", "rm", "-f", tag) })
	cid := mustDocker(t, "create", tag, "/none") // never started: only exported
	t.Cleanup(func() { dockerCmd(context.Background(), "rm", "-f", cid) })

	var got []string
	exportFiles(ctx, t, cid, func(hdr *tar.Header, _ io.Reader) {
		if hdr.Typeflag == tar.TypeReg && strings.HasPrefix(hdr.Name, "ctx/") {
			got = append(got, hdr.Name)
		}
	})
	sort.Strings(got)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("files in the build context (-want +got):\n%s", diff)
	}
}
