package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os/exec"
	"strings"
)

// dockerReachable fails with one plain sentence when no Docker Engine answers.
func dockerReachable(ctx context.Context) error {
	out, err := exec.CommandContext(ctx, "docker", "version", "--format", "{{.Server.Version}}").CombinedOutput()
	if err != nil {
		return fmt.Errorf("no Docker Engine reachable (docker version: %s): %w", firstLine(out), err)
	}
	return nil
}

func firstLine(b []byte) string {
	s, _, _ := strings.Cut(strings.TrimSpace(string(b)), "\n")
	return s
}

// imageLabel returns the value of one label of a local image and the image's ID; both are
// empty when the image does not exist.
func imageLabel(ctx context.Context, ref, label string) (value, id string) {
	out, err := exec.CommandContext(ctx, "docker", "image", "inspect", "--format", "{{json .}}", ref).Output()
	if err != nil {
		return "", ""
	}
	var img struct {
		ID     string `json:"Id"`
		Config struct {
			Labels map[string]string
		}
	}
	if err := json.Unmarshal(bytes.TrimSpace(out), &img); err != nil {
		return "", ""
	}
	return img.Config.Labels[label], img.ID
}

// dockerImport streams the layout's root filesystem into `docker import`, which makes a
// one-layer image with exactly the owners and modes of the tar and the configuration given
// as --change instructions.
func dockerImport(ctx context.Context, ref string, l *layout) error {
	changes, err := l.Config.changes()
	if err != nil {
		return err
	}
	args := []string{"import"}
	for _, c := range changes {
		args = append(args, "--change", c)
	}
	args = append(args, "-", ref)
	pr, pw := io.Pipe()
	cmd := exec.CommandContext(ctx, "docker", args...)
	cmd.Stdin = pr
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("docker import: %w", err)
	}
	werr := make(chan error, 1)
	go func() {
		err := l.writeTar(pw)
		pw.CloseWithError(err)
		werr <- err
	}()
	err = cmd.Wait()
	pr.Close() // unblocks the writer if docker stopped reading early
	terr := <-werr
	if err != nil {
		return fmt.Errorf("docker import: %s: %w", strings.TrimSpace(out.String()), err)
	}
	if terr != nil {
		return fmt.Errorf("write root filesystem: %w", terr)
	}
	return nil
}
