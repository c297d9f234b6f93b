package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/ztbank/ztbank/libs/topology"
	"github.com/ztbank/ztbank/tools/devstack/stack"
)

// ServiceName is a workload's compose service: the edge by its name, tenant workloads as
// <tenant>-<service>.
func ServiceName(w topology.Workload) string {
	if w.Tenant == "" {
		return w.Name
	}
	return w.Tenant + "-" + w.Service
}

// Ports inside every container (the topology's loopback addresses are for the local stack).
const (
	MTLSPort   = "8443" // ZTBANK_LISTEN
	HealthPort = "9090" // ZTBANK_HEALTH_LISTEN
	PublicPort = "8080" // the edge's client-facing HTTPS listener
)

// compose runs the pinned docker-compose binary on the stack's project.
type compose struct {
	bin, file, project string
}

func (c compose) run(ctx context.Context, args ...string) (string, error) {
	full := append([]string{"-f", c.file, "-p", c.project}, args...)
	cmd := exec.CommandContext(ctx, c.bin, full...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("%s %s: %w: %s", filepath.Base(c.bin), strings.Join(args, " "), err, bytes.TrimSpace(stderr.Bytes()))
	}
	return strings.TrimSpace(string(out)), nil
}

// stackInfo runs on the host after `compose up --wait` and writes the stack.json that the
// isolation suite and the compose tests read: published loopback ports, the dev CA, the
// provider's passwords and the SPIRE admin socket, all as host paths.
func stackInfo(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("composeinit stack", flag.ContinueOnError)
	fs.SetOutput(stderr)
	bin := fs.String("compose", envOr(getenv, "COMPOSE", ".dev/bin/docker-compose"), "docker-compose `binary`")
	file := fs.String("file", "docker-compose.yml", "compose `file`")
	project := fs.String("project", envOr(getenv, "COMPOSE_PROJECT_NAME", "ztbank"), "compose project `name`")
	dir := fs.String("dir", ".dev/compose", "host `directory` for stack.json and the files it names")
	adminSock := fs.String("spire-admin", "", "host path of the SPIRE server admin socket (default: api.sock in the spire-admin volume's host directory)")
	spireBin := fs.String("spire-bin", "", "spire-server binary on the host for minting test SVIDs (default: the one make images built, else make spire's)")
	topo, err := parseWithTopology(fs, args, getenv)
	if err != nil {
		return err
	}
	absDir, err := filepath.Abs(*dir)
	if err != nil {
		return err
	}
	c := compose{bin: *bin, file: *file, project: *project}
	if *adminSock == "" {
		// The volume's directory on the host: the same socket the registration step uses.
		mp, err := exec.CommandContext(ctx, "docker", "volume", "inspect", "-f", "{{.Mountpoint}}", *project+"_spire-admin").Output()
		if err != nil {
			return fmt.Errorf("docker volume inspect %s_spire-admin: %w", *project, err)
		}
		*adminSock = filepath.Join(strings.TrimSpace(string(mp)), "api.sock")
	}
	if *spireBin == "" {
		for _, p := range []string{".dev/images/spire/spire-server", ".dev/bin/spire-server"} {
			if abs, err := filepath.Abs(p); err == nil && exists(abs) {
				*spireBin = abs
				break
			}
		}
	}
	files := filepath.Join(absDir, "files")
	if err := os.MkdirAll(files, 0o700); err != nil {
		return err
	}
	// Copies, not bind mounts: the containers write these files as 65532, which a developer's
	// own uid could not read from a bind-mounted directory.
	copies := []struct{ service, src, dst string }{
		{"edge", "/run/ztbank/pki/" + devCAFile, devCAFile},
		{"spire-agent", "/run/spire/bootstrap/" + bundleFile, bundleFile},
		{"devoidc", "/run/ztbank/oidc/provider.json", "provider.json"},
		{"devoidc", "/run/ztbank/oidc/passwords.json", "passwords.json"},
		{"devoidc", "/run/ztbank/oidc/client-secrets.json", "client-secrets.json"},
	}
	for _, cp := range copies {
		dst := filepath.Join(files, cp.dst)
		if _, err := c.run(ctx, "cp", cp.service+":"+cp.src, dst); err != nil {
			return err
		}
	}
	var provider providerJSON
	if err := readJSON(filepath.Join(files, "provider.json"), &provider); err != nil {
		return err
	}

	info := stack.Info{Status: "ready", TrustDomain: topo.TrustDomain.Name(), SpireServer: *adminSock,
		Bundle: filepath.Join(files, bundleFile), SpireBin: *spireBin}
	edgeID, err := c.run(ctx, "ps", "-q", "edge")
	if err != nil || edgeID == "" {
		return fmt.Errorf("edge container not found (is the stack up?): %v", err)
	}
	pid, err := exec.CommandContext(ctx, "docker", "inspect", "-f", "{{.State.Pid}}", edgeID).Output()
	if err != nil {
		return fmt.Errorf("docker inspect edge: %w", err)
	}
	// The suites check that this process lives: it is the edge's, seen from the host.
	if info.PID, err = strconv.Atoi(strings.TrimSpace(string(pid))); err != nil || info.PID <= 0 {
		return fmt.Errorf("edge container has no running process (%q)", pid)
	}
	for _, w := range topo.Workloads {
		if w.External {
			continue
		}
		addr, err := c.run(ctx, "port", ServiceName(w), MTLSPort)
		if err != nil {
			return fmt.Errorf("%s: %w", w.Name, err)
		}
		health, err := c.run(ctx, "port", ServiceName(w), HealthPort)
		if err != nil {
			return fmt.Errorf("%s: %w", w.Name, err)
		}
		info.Workloads = append(info.Workloads, stack.WorkloadInfo{Name: w.Name, SpiffeID: w.ID.String(),
			Binary: "container " + ServiceName(w), Listen: addr, Health: health})
	}
	public, err := c.run(ctx, "port", "edge", PublicPort)
	if err != nil {
		return err
	}
	info.Edge = &stack.EdgeInfo{URL: "https://" + public, CAFile: filepath.Join(files, devCAFile)}
	info.OIDC = &stack.OIDCInfo{Issuer: provider.Issuer, CAFile: filepath.Join(files, devCAFile),
		PasswordsFile: filepath.Join(files, "passwords.json"), ClientSecrets: filepath.Join(files, "client-secrets.json")}
	out := filepath.Join(absDir, "stack.json")
	if err := stack.WriteInfo(out, info); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "compose stack: edge %s, OIDC %s, %s\n", info.Edge.URL, provider.Issuer, out)
	return nil
}

type providerJSON struct {
	Issuer string `json:"issuer"`
}

func readJSON(path string, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}
