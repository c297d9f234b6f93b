package main

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"
)

// TestRunRefusesBadInput: without a running stack, with a non-loopback address or a stray
// argument, the console stops with one line saying what to do, and serves nothing.
func TestRunRefusesBadInput(t *testing.T) {
	dir := t.TempDir()
	getenv := func(k string) string {
		if k == "ZTBANK_DEV_DIR" {
			return dir
		}
		return ""
	}
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"no stack", []string{"console"}, "start one with `make up`"},
		{"stray argument", []string{"console", "serve"}, `unexpected argument "serve"`},
		{"bad flag", []string{"console", "-nope"}, "flag provided but not defined"},
		{"stack file elsewhere", []string{"console", "-stack", filepath.Join(dir, "missing.json")}, "no running stack"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			err := run(context.Background(), tc.args, getenv, &out, &errOut)
			if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
				t.Errorf("run(%v) = %v, want one line containing %q", tc.args, err, tc.want)
			}
			if strings.Contains(out.String(), "token=") {
				t.Errorf("printed a URL although it serves nothing: %s", out.String())
			}
		})
	}
}
