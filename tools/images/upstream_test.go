package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

var (
	syntaxLine = regexp.MustCompile(`(?im)^#\s*syntax\s*=`)
	runMount   = regexp.MustCompile(`(?m)^RUN\s+--mount`)
	tagLine    = regexp.MustCompile(`-t (ztbank/[a-z0-9-]+:dev) \.`)
	goBuildPkg = regexp.MustCompile(`(?m)^RUN go build .* -o /out/(\S+) (\./\S+)$`)
	entrypoint = regexp.MustCompile(`(?m)^ENTRYPOINT \["([^"]+)"\]$`)
)

// TestUpstreamDockerfiles: the Dockerfiles for machines with internet need no BuildKit
// frontend (no `# syntax=`, no `RUN --mount`) and produce the image `make images` builds under
// the same name: same package, same binary path, same user.
func TestUpstreamDockerfiles(t *testing.T) {
	list, err := loadList("../..")
	if err != nil {
		t.Fatal(err)
	}
	byImage := map[string]image{}
	for _, im := range list {
		byImage[im.Image] = im
	}
	files, err := filepath.Glob(filepath.Join("..", "..", "deploy", "docker", "*.Dockerfile"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no Dockerfiles in deploy/docker: %v", err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			src := string(b)
			if syntaxLine.MatchString(src) {
				t.Error("has a `# syntax=` line: BuildKit would pull a frontend image")
			}
			if runMount.MatchString(src) {
				t.Error("uses RUN --mount (BuildKit only)")
			}
			m := tagLine.FindStringSubmatch(src)
			if m == nil {
				t.Fatal("no `-t ztbank/<name>:dev .` build command in its header")
			}
			im, ok := byImage[m[1]]
			if !ok || im.Build != "static" {
				t.Fatalf("builds %s, which deploy/images/images.json does not list as a Go image", m[1])
			}
			gb := goBuildPkg.FindStringSubmatch(src)
			if gb == nil || gb[1] != im.Binary() || gb[2] != im.Package {
				t.Errorf("go build step %q, want -o /out/%s %s", gb, im.Binary(), im.Package)
			}
			for _, ep := range entrypoint.FindAllStringSubmatch(src, -1) {
				if ep[1] != im.BinaryPath() {
					t.Errorf("ENTRYPOINT %s, want %s as in `make images`", ep[1], im.BinaryPath())
				}
			}
			if !strings.Contains(src, "USER 65532:65532") {
				t.Error("no USER 65532:65532")
			}
		})
	}
}
