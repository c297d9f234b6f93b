package main

import (
	"context"
	"debug/elf"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestSPIREBinariesStatic: the image has no libc, so a binary with an ELF interpreter (a
// dynamically linked one) could not even start there.
func TestSPIREBinariesStatic(t *testing.T) {
	requireImages(t)
	for _, name := range []string{"spire-server", "spire-agent"} {
		f, err := elf.Open(filepath.Join("..", "..", ".dev", "images", "spire", name))
		if err != nil {
			t.Fatalf("%s: %v (run `make images`)", name, err)
		}
		for _, p := range f.Progs {
			if p.Type == elf.PT_INTERP {
				t.Errorf("%s is dynamically linked (has PT_INTERP)", name)
			}
		}
		f.Close()
	}
}

// serverConf is a minimal SPIRE server configuration whose datastore is sqlite3 in the
// image's data directory: the one part of SPIRE that needs cgo.
const serverConf = `server {
  bind_address = "0.0.0.0"
  bind_port = "8081"
  trust_domain = "images.test"
  data_dir = "/var/lib/spire/server"
  log_level = "INFO"
}
plugins {
  DataStore "sql" {
    plugin_data {
      database_type = "sqlite3"
      connection_string = "/var/lib/spire/server/datastore.sqlite3"
    }
  }
  KeyManager "disk" {
    plugin_data {
      keys_path = "/var/lib/spire/server/keys.json"
    }
  }
  NodeAttestor "join_token" {
    plugin_data {}
  }
}
`

// TestSPIREServerSQLite proves the static cgo build's sqlite datastore works in the image: the
// server starts on sqlite under a read-only root as the image's non-root user with its data
// on a named volume, an entry written through the API survives a restart of the container
// (so it was in the sqlite file, not in memory), and the database file is there.
func TestSPIREServerSQLite(t *testing.T) {
	requireImages(t)
	version, err := spireVersion("../..")
	if err != nil {
		t.Fatal(err)
	}
	img := "ztbank/spire-server:" + version
	dir := t.TempDir()
	conf := filepath.Join(dir, "server.conf")
	if err := os.WriteFile(conf, []byte(serverConf), 0o644); err != nil {
		t.Fatal(err)
	}
	volume := randomName(t, "ztbank-imgtest-spiredata")
	mustDocker(t, "volume", "create", volume)
	removeLater(t, "volume", volume)
	name := randomName(t, "ztbank-imgtest-spire-server")
	removeLater(t, "container", name)
	mustDocker(t, "run", "-d", "--name", name,
		"--read-only", "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
		// The API socket's default directory is under /tmp.
		"--tmpfs", "/tmp:mode=1777",
		"-v", volume+":/var/lib/spire/server",
		"-v", conf+":/etc/spire/server/server.conf:ro",
		img, "-config", "/etc/spire/server/server.conf")

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	healthy := func() error {
		if st := mustDocker(t, "inspect", "-f", "{{.State.Status}}", name); st != "running" {
			logs, _ := dockerCmd(ctx, "logs", name)
			t.Fatalf("spire-server container %s:\n%s", st, logs)
		}
		out, err := dockerCmd(ctx, "exec", name, "/opt/spire/bin/spire-server", "healthcheck")
		if err != nil {
			return fmt.Errorf("%v: %s", err, strings.TrimSpace(out))
		}
		return nil
	}
	waitFor(t, "spire-server healthy on sqlite", 2*time.Minute, healthy)

	id := "spiffe://images.test/workload/" + randomName(t, "w")
	mustDocker(t, "exec", name, "/opt/spire/bin/spire-server", "entry", "create",
		"-parentID", "spiffe://images.test/agent", "-spiffeID", id, "-selector", "unix:uid:1000")
	mustDocker(t, "restart", "-t", "30", name)
	waitFor(t, "spire-server healthy again after a restart", 2*time.Minute, healthy)
	out := mustDocker(t, "exec", name, "/opt/spire/bin/spire-server", "entry", "show", "-spiffeID", id)
	if !strings.Contains(out, "Found 1 entry") || !strings.Contains(out, id) {
		t.Errorf("entry after restart:\n%s", out)
	}
	logs, _ := dockerCmd(ctx, "logs", name)
	if strings.Contains(logs, "CGO_ENABLED=0") || strings.Contains(logs, "requires cgo") {
		t.Errorf("sqlite driver built without cgo:\n%s", logs)
	}
	if !strings.Contains(logs, "sqlite3") {
		t.Errorf("logs do not show the sqlite3 datastore:\n%s", logs)
	}
	// The database is a real sqlite file on the volume.
	copied := filepath.Join(dir, "datastore.sqlite3")
	mustDocker(t, "cp", name+":/var/lib/spire/server/datastore.sqlite3", copied)
	b, err := os.ReadFile(copied)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(b), "SQLite format 3\x00") {
		t.Errorf("datastore.sqlite3 starts with %q, want the sqlite header", b[:min(len(b), 16)])
	}
	// The version is the pinned release, not a "-dev" build.
	v := mustDocker(t, "run", "--rm", "--read-only", "--cap-drop", "ALL", "--network", "none",
		"--entrypoint", "/opt/spire/bin/spire-server", img, "--version")
	if v != version {
		t.Errorf("spire-server --version = %q, want %s", v, version)
	}
}

const agentConf = `agent {
  data_dir = "/var/lib/spire/agent"
  log_level = "INFO"
  server_address = "%s"
  server_port = "8081"
  socket_path = "/run/spire/agent/public/api.sock"
  trust_domain = "images.test"
  insecure_bootstrap = true
}
plugins {
  NodeAttestor "join_token" {
    plugin_data {}
  }
  KeyManager "memory" {
    plugin_data {}
  }
  WorkloadAttestor "unix" {
    plugin_data {}
  }
}
`

// TestSPIREAgentServesWorkloads runs both SPIRE images as they run in compose — each
// read-only, no capabilities, the image's non-root user, on a user-defined network — and
// shows the whole path works with the static builds: the agent finds the server by its
// container name (Go's resolver: netgo), attests with a join token, and hands an X.509-SVID
// to a workload matched by `unix:user:nonroot`, a selector that needs the user name from
// /etc/passwd (Go's user lookup: osusergo).
func TestSPIREAgentServesWorkloads(t *testing.T) {
	requireImages(t)
	version, err := spireVersion("../..")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	network := randomName(t, "ztbank-imgtest-spirenet")
	mustDocker(t, "network", "create", network)
	server := randomName(t, "ztbank-imgtest-spire-server")
	agent := randomName(t, "ztbank-imgtest-spire-agent")
	// Removed in reverse order: containers first, then the network they are on.
	t.Cleanup(func() { dockerCmd(context.Background(), "network", "rm", network) })
	removeLater(t, "container", server)
	removeLater(t, "container", agent)

	conf := filepath.Join(dir, "server.conf")
	if err := os.WriteFile(conf, []byte(serverConf), 0o644); err != nil {
		t.Fatal(err)
	}
	mustDocker(t, "run", "-d", "--name", server, "--network", network,
		"--read-only", "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
		"--tmpfs", "/tmp:mode=1777", "--tmpfs", "/var/lib/spire/server:uid=65532,gid=65532",
		"-v", conf+":/etc/spire/server/server.conf:ro",
		"ztbank/spire-server:"+version, "-config", "/etc/spire/server/server.conf")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	exec := func(container string, args ...string) func() error {
		return func() error {
			if st := mustDocker(t, "inspect", "-f", "{{.State.Status}}", container); st != "running" {
				logs, _ := dockerCmd(ctx, "logs", container)
				t.Fatalf("%s %s:\n%s", container, st, logs)
			}
			out, err := dockerCmd(ctx, append([]string{"exec", container}, args...)...)
			if err != nil {
				return fmt.Errorf("%v: %s", err, strings.TrimSpace(out))
			}
			return nil
		}
	}
	waitFor(t, "spire-server healthy", 2*time.Minute, exec(server, "/opt/spire/bin/spire-server", "healthcheck"))

	token := strings.TrimPrefix(mustDocker(t, "exec", server, "/opt/spire/bin/spire-server", "token", "generate",
		"-spiffeID", "spiffe://images.test/agent/imgtest"), "Token: ")
	mustDocker(t, "exec", server, "/opt/spire/bin/spire-server", "entry", "create",
		"-parentID", "spiffe://images.test/agent/imgtest", "-spiffeID", "spiffe://images.test/workload/nonroot",
		"-selector", "unix:user:nonroot")

	aconf := filepath.Join(dir, "agent.conf")
	if err := os.WriteFile(aconf, []byte(fmt.Sprintf(agentConf, server)), 0o644); err != nil {
		t.Fatal(err)
	}
	mustDocker(t, "run", "-d", "--name", agent, "--network", network,
		"--read-only", "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
		"--tmpfs", "/tmp:mode=1777", "--tmpfs", "/var/lib/spire/agent:uid=65532,gid=65532",
		"--tmpfs", "/run/spire/agent/public:uid=65532,gid=65532",
		"-v", aconf+":/etc/spire/agent/agent.conf:ro",
		"ztbank/spire-agent:"+version, "-config", "/etc/spire/agent/agent.conf", "-joinToken", token)
	waitFor(t, "spire-agent healthy", 2*time.Minute,
		exec(agent, "/opt/spire/bin/spire-agent", "healthcheck", "-socketPath", "/run/spire/agent/public/api.sock"))

	// The entry reaches the agent's cache asynchronously: wait until the workload gets it.
	var svid string
	waitFor(t, "an X.509-SVID for the nonroot workload", 2*time.Minute, func() error {
		out, err := dockerCmd(ctx, "exec", agent, "/opt/spire/bin/spire-agent", "api", "fetch", "x509",
			"-socketPath", "/run/spire/agent/public/api.sock")
		if err != nil {
			return fmt.Errorf("%v: %s", err, strings.TrimSpace(out))
		}
		svid = out
		return nil
	})
	if !strings.Contains(svid, "SPIFFE ID:\t\tspiffe://images.test/workload/nonroot") {
		t.Errorf("fetched SVIDs:\n%s", svid)
	}
}
