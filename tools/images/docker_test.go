package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// requireDocker skips, saying so plainly, when no Docker Engine answers.
func requireDocker(t *testing.T) {
	t.Helper()
	if err := dockerReachable(context.Background()); err != nil {
		t.Skipf("SKIPPED: needs a Docker Engine: %v", err)
	}
}

// requireImages also needs the images: `make images-test` builds them and sets
// ZTBANK_IMAGE_TESTS; `go test work` (make unit) runs before any image exists and skips.
func requireImages(t *testing.T) {
	t.Helper()
	requireDocker(t)
	if os.Getenv("ZTBANK_IMAGE_TESTS") == "" {
		t.Skip("SKIPPED: image tests run under `make images-test` (it builds the images first); set ZTBANK_IMAGE_TESTS=1 after `make images` to run them here")
	}
}

// dockerCmd runs the docker CLI and returns its combined output.
func dockerCmd(ctx context.Context, args ...string) (string, error) {
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, "docker", args...)
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

// mustDocker fails the test when the docker command fails.
func mustDocker(t *testing.T, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	out, err := dockerCmd(ctx, args...)
	if err != nil {
		t.Fatalf("docker %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(out)
}

func randomName(t *testing.T, prefix string) string {
	t.Helper()
	b := make([]byte, 6)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return prefix + "-" + hex.EncodeToString(b)
}

// removeLater removes a container or volume when the test ends, whatever happened.
func removeLater(t *testing.T, kind, name string) {
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		args := []string{kind, "rm", "-f", name}
		if kind == "volume" {
			args = []string{"volume", "rm", "-f", name}
		}
		if out, err := dockerCmd(ctx, args...); err != nil {
			t.Logf("cleanup docker %s: %v: %s", strings.Join(args, " "), err, out)
		}
	})
}

// waitFor polls cond until it returns nil or the deadline passes; the last error explains a
// timeout.
func waitFor(t *testing.T, what string, limit time.Duration, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(limit)
	var err error
	for {
		if err = cond(); err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s: %v", what, limit, err)
		}
		time.Sleep(250 * time.Millisecond) // poll interval, not a wait for an outcome
	}
}
