package localspire

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
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
	fmt.Fprintf(progress, "building SPIRE v1.13.3 into %s (first time: several minutes)...\n", bin)
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin+"/",
		"github.com/spiffe/spire/cmd/spire-server", "github.com/spiffe/spire/cmd/spire-agent")
	cmd.Dir = filepath.Join(root, "tools", "spire")
	cmd.Env = append(os.Environ(), "GOWORK=off")
	cmd.Stdout, cmd.Stderr = progress, progress
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("build SPIRE: %w", err)
	}
	return bin, nil
}
