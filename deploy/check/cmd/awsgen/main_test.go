package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// run writes every file, removes a stale tenant stack, and a bad topology path is one error.
func TestRun(t *testing.T) {
	out := t.TempDir()
	stale := filepath.Join(out, "cfn", "tenant-gone.json")
	if err := os.MkdirAll(filepath.Dir(stale), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(stale, []byte("{}"), 0o644); err != nil {
		t.Fatal(err)
	}
	var stdout bytes.Buffer
	if err := run(context.Background(), []string{"awsgen", "-out", out}, os.Getenv, &stdout, &stdout); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Errorf("stale %s survived regeneration", stale)
	}
	for _, f := range []string{"cfn/audit.json", "cfn/platform.json", "eksctl/cluster.yaml"} {
		if _, err := os.Stat(filepath.Join(out, f)); err != nil {
			t.Errorf("missing %s: %v", f, err)
		}
	}
	err := run(context.Background(), []string{"awsgen", "-out", out, "-topology", filepath.Join(out, "nope.yaml")}, os.Getenv, &stdout, &stdout)
	if err == nil || strings.Contains(err.Error(), "\n") {
		t.Fatalf("bad topology: want a one-line error, got %v", err)
	}
}
