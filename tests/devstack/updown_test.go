// Package devstack checks `make up` / `make down` as a user runs them: twice in a row, with
// nothing left behind (processes, sockets, ports) after each `down`.
package devstack

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ztbank/ztbank/devkit/localspire"
	"github.com/ztbank/ztbank/tools/devstack/stack"
)

func TestUpDownTwice(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the local stack twice; skipped in -short mode")
	}
	root, err := localspire.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	state, err := os.MkdirTemp("", "ztdev")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(state)
	bin := filepath.Join(state, "devstack")
	build := exec.Command("go", "build", "-o", bin, "./tools/devstack")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build devstack: %v\n%s", err, out)
	}
	devstack := func(cmd string) string {
		t.Helper()
		c := exec.Command(bin, cmd)
		c.Dir = root
		c.Env = append(os.Environ(), "ZTBANK_DEV_DIR="+state, "ZTBANK_DEV_FREE_PORTS=1")
		var out bytes.Buffer
		c.Stdout, c.Stderr = &out, &out
		if err := c.Run(); err != nil {
			t.Fatalf("devstack %s: %v\n%s", cmd, err, out.String())
		}
		return out.String()
	}
	for round := 1; round <= 2; round++ {
		out := devstack("up")
		if !strings.Contains(out, "stack is up") {
			t.Fatalf("round %d: up did not report success:\n%s", round, out)
		}
		info, err := stack.ReadInfo(filepath.Join(state, "stack.json"))
		if err != nil {
			t.Fatal(err)
		}
		if len(info.Workloads) == 0 {
			t.Fatalf("round %d: stack.json lists no workloads", round)
		}
		for _, w := range info.Workloads {
			if stack.PortFree(w.Listen) {
				t.Errorf("round %d: %s is not listening on %s", round, w.Name, w.Listen)
			}
		}
		devstack("down")
		for _, w := range info.Workloads {
			if !stack.PortFree(w.Listen) || !stack.PortFree(w.Health) {
				t.Errorf("round %d: %s ports still bound after down", round, w.Name)
			}
		}
		for _, sock := range []string{info.AgentSocket, info.SpireServer} {
			if _, err := os.Stat(sock); err == nil {
				t.Errorf("round %d: socket %s left behind", round, sock)
			}
		}
		if procs := processesUnder(state); len(procs) > 0 {
			t.Errorf("round %d: processes left running from %s: %v", round, state, procs)
		}
		if _, err := os.Stat(filepath.Join(state, "stack.json")); err == nil {
			t.Errorf("round %d: stack.json left behind", round)
		}
	}
}

// processesUnder lists live processes whose executable lives under dir or whose command
// line names it (SPIRE runs from the shared .dev/bin with its config under dir).
func processesUnder(dir string) []string {
	var out []string
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		exe, _ := os.Readlink(filepath.Join("/proc", e.Name(), "exe"))
		cmdline, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if strings.HasPrefix(exe, dir+string(filepath.Separator)) || bytes.Contains(cmdline, []byte(dir)) {
			out = append(out, fmt.Sprintf("%s (%s)", e.Name(), bytes.ReplaceAll(cmdline, []byte{0}, []byte{' '})))
		}
	}
	return out
}
