package localspire

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
)

// RepoRoot walks up from the working directory to the directory holding go.work.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.work")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("go.work not found above the working directory")
		}
		dir = parent
	}
}

// Binaries returns the directory holding spire-server and spire-agent, building them from
// the pinned Go tool module (tools/spire, SPIRE v1.13.3) when they are missing. A cold
// build takes several minutes on two cores; progress goes to progress. ZTBANK_SPIRE_BIN
// overrides the directory.
func Binaries(ctx context.Context, progress io.Writer) (string, error) {
	if d := os.Getenv("ZTBANK_SPIRE_BIN"); d != "" {
		return d, nil
	}
	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	bin := filepath.Join(root, ".dev", "bin")
	have := true
	for _, b := range []string{"spire-server", "spire-agent"} {
		if _, err := os.Stat(filepath.Join(bin, b)); err != nil {
			have = false
		}
	}
	if have {
		return bin, nil
	}
	// One build at a time across processes: test packages start stacks in parallel, and
	// five concurrent SPIRE compiles on two cores take longer than five sequential ones.
	// `make spire` holds the only definition of the flags, shared with the images, so the
	// Go build cache serves every later build.
	if err := os.MkdirAll(bin, 0o755); err != nil {
		return "", err
	}
	lock, err := os.OpenFile(filepath.Join(bin, ".spire-build.lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return "", err
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return "", fmt.Errorf("lock SPIRE build: %w", err)
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN)
	fmt.Fprintf(progress, "building SPIRE v1.13.3 into %s with make spire (first time: several minutes)...\n", bin)
	cmd := exec.CommandContext(ctx, "make", "--no-print-directory", "-C", root, "spire")
	cmd.Stdout, cmd.Stderr = progress, progress
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("build SPIRE: %w", err)
	}
	return bin, nil
}
