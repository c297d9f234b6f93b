package main

import (
	"context"
	"encoding/json"
	"errors"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

var numericUser = regexp.MustCompile(`^([0-9]+):([0-9]+)$`)

// TestEveryImage: each image of the list exists, runs as a numeric non-root user, carries its
// inputs hash, and started as compose and the manifests start it — read-only root, every
// capability dropped, no network — its `healthcheck` against nothing fails with one clear
// line rather than a crash.
func TestEveryImage(t *testing.T) {
	requireImages(t)
	list, err := loadList("../..")
	if err != nil {
		t.Fatal(err)
	}
	// What each healthcheck must say when nothing is there to answer.
	wantMessage := map[string]*regexp.Regexp{
		"static":       regexp.MustCompile(`healthcheck: .*(connection refused|not ready|no such file)`),
		"spire-server": regexp.MustCompile(`(?i)server is unhealthy`),
		"spire-agent":  regexp.MustCompile(`(?i)agent is unhealthy`),
		"rootfs":       regexp.MustCompile(`^pg-entrypoint: healthcheck: PostgreSQL on 127\.0\.0\.1:5432 is not accepting connections: no response$`),
	}
	for _, im := range list {
		t.Run(im.Name(), func(t *testing.T) {
			var cfg []struct {
				Config struct {
					User       string
					Entrypoint []string
					Labels     map[string]string
				}
			}
			if err := json.Unmarshal([]byte(mustDocker(t, "image", "inspect", im.Image)), &cfg); err != nil || len(cfg) != 1 {
				t.Fatalf("inspect %s: %v (run `make images`)", im.Image, err)
			}
			c := cfg[0].Config
			m := numericUser.FindStringSubmatch(c.User)
			if m == nil {
				t.Fatalf("User = %q, want numeric uid:gid", c.User)
			}
			if uid, _ := strconv.Atoi(m[1]); uid == 0 {
				t.Errorf("User = %q: runs as root", c.User)
			}
			if gid, _ := strconv.Atoi(m[2]); gid == 0 {
				t.Errorf("User = %q: root group", c.User)
			}
			if !regexp.MustCompile(`^sha256:[0-9a-f]{64}$`).MatchString(c.Labels[inputsLabel]) {
				t.Errorf("label %s = %q, want the inputs hash", inputsLabel, c.Labels[inputsLabel])
			}
			if len(c.Entrypoint) == 0 || c.Entrypoint[0] != im.BinaryPath() {
				t.Errorf("Entrypoint = %q, want %s first", c.Entrypoint, im.BinaryPath())
			}

			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			name := randomName(t, "ztbank-imgtest-"+im.Name())
			removeLater(t, "container", name)
			out, err := dockerCmd(ctx, "run", "--name", name, "--read-only", "--cap-drop", "ALL",
				"--security-opt", "no-new-privileges", "--network", "none",
				"--entrypoint", im.BinaryPath(), im.Image, "healthcheck")
			var exit *exec.ExitError
			if !errors.As(err, &exit) {
				t.Fatalf("healthcheck against nothing: err = %v (want a non-zero exit)\n%s", err, out)
			}
			// 125-127 are docker's own failures (cannot start, not executable, not found);
			// 2 with a goroutine dump is a Go panic.
			if code := exit.ExitCode(); code >= 125 || code == 2 && strings.Contains(out, "goroutine ") {
				t.Fatalf("healthcheck did not run or crashed (exit %d):\n%s", code, out)
			}
			lines := strings.Split(strings.TrimSpace(out), "\n")
			if len(lines) != 1 {
				t.Fatalf("healthcheck printed %d lines, want one:\n%s", len(lines), out)
			}
			want := wantMessage[im.Build]
			if im.Build == "spire" {
				want = wantMessage[im.Name()]
			}
			if !want.MatchString(lines[0]) {
				t.Errorf("healthcheck said %q, want it to match %s", lines[0], want)
			}
		})
	}
}
