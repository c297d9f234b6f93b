// Package localspire runs a real SPIRE server and agent on loopback for the local stack and
// for integration tests: join-token node attestation, the unix workload attestor with
// discover_workload_path, and registration entries keyed by each workload's binary path
// (never by uid alone, which every process of that user would match).
package localspire

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/ztbank/ztbank/devkit/childproc"
	"github.com/ztbank/ztbank/devkit/localports"
)

// Config describes where and how to run SPIRE.
type Config struct {
	// BinDir holds spire-server and spire-agent. See Binaries.
	BinDir string
	// Dir receives configs, data, sockets and logs. It must be short enough for a unix
	// socket path (under ~90 bytes).
	Dir         string
	TrustDomain spiffeid.TrustDomain
	// DefaultTTL is the X509-SVID TTL for entries without their own. Default 1h.
	DefaultTTL time.Duration
	// Log receives the servers' output; nil discards it (it still goes to files in Dir).
	Log io.Writer
}

// Stack is a running SPIRE server and agent.
type Stack struct {
	cfg        Config
	ServerSock string // private admin API socket
	AgentSock  string // Workload API socket
	AgentID    spiffeid.ID
	serverPort int
	healthPort int

	server *childproc.Process
	agent  *childproc.Process
	token  string
}

// Entry is a registration entry: a workload ID granted to processes running BinaryPath.
type Entry struct {
	ID         spiffeid.ID
	BinaryPath string
	TTL        time.Duration // zero means the server default
}

// Start launches the server, waits for it, creates a join token, starts the agent with the
// server's bundle as its trust anchor (no insecure bootstrap), and waits until the agent is
// attested.
func Start(ctx context.Context, cfg Config) (*Stack, error) {
	if cfg.DefaultTTL == 0 {
		cfg.DefaultTTL = time.Hour
	}
	for _, b := range []string{"spire-server", "spire-agent"} {
		if _, err := os.Stat(filepath.Join(cfg.BinDir, b)); err != nil {
			return nil, fmt.Errorf("%s not found in %s (run `make spire` to build SPIRE v1.13.3): %w", b, cfg.BinDir, err)
		}
	}
	dir, err := filepath.Abs(cfg.Dir)
	if err != nil {
		return nil, err
	}
	cfg.Dir = dir
	for _, d := range []string{"server-data", "agent-data"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o700); err != nil {
			return nil, err
		}
	}
	s := &Stack{cfg: cfg, ServerSock: filepath.Join(dir, "server.sock"), AgentSock: filepath.Join(dir, "agent.sock")}
	if len(s.AgentSock) > 100 {
		return nil, fmt.Errorf("socket path %s is too long for a unix socket; use a shorter directory", s.AgentSock)
	}
	// A previous run killed hard may have left sockets behind; SPIRE refuses to bind over them.
	os.Remove(s.ServerSock)
	os.Remove(s.AgentSock)

	// The ports are reserved (see FreePorts), so a bind failure is unlikely; a server that
	// still exits before it is ready is started again on fresh ports.
	var ports []int
	for attempt := 1; ; attempt++ {
		if ports, err = FreePorts(2); err != nil {
			return nil, err
		}
		s.serverPort = ports[0]
		serverConf := fmt.Sprintf(serverHCL, ports[0], s.ServerSock, cfg.TrustDomain.Name(), filepath.Join(dir, "server-data"),
			cfg.DefaultTTL.String(), filepath.Join(dir, "server-data", "datastore.sqlite3"), filepath.Join(dir, "server-data", "keys.json"), ports[1])
		if err := os.WriteFile(filepath.Join(dir, "server.conf"), []byte(serverConf), 0o600); err != nil {
			return nil, err
		}
		s.server, err = s.spawn("spire-server", "server.log", "run", "-config", filepath.Join(dir, "server.conf"))
		if err != nil {
			return nil, err
		}
		err = s.server.WaitReady(ctx, 60*time.Second, childproc.Get(fmt.Sprintf("http://127.0.0.1:%d/ready", ports[1])))
		if err == nil {
			s.healthPort = ports[1]
			break
		}
		exitedEarly := s.server.HasExited()
		s.Stop()
		if !exitedEarly || attempt == 3 || ctx.Err() != nil {
			return nil, fmt.Errorf("spire-server did not become ready (see %s): %w", filepath.Join(dir, "server.log"), err)
		}
		os.Remove(s.ServerSock)
	}

	bundle, err := s.serverCmd(ctx, "bundle", "show")
	if err != nil {
		s.Stop()
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "bundle.pem"), bundle, 0o644); err != nil {
		s.Stop()
		return nil, err
	}
	out, err := s.serverCmd(ctx, "token", "generate", "-ttl", "600")
	if err != nil {
		s.Stop()
		return nil, err
	}
	m := regexp.MustCompile(`Token:\s*(\S+)`).FindSubmatch(out)
	if m == nil {
		s.Stop()
		return nil, fmt.Errorf("unexpected token output %q", out)
	}
	s.token = string(m[1])
	s.AgentID, err = spiffeid.FromSegments(cfg.TrustDomain, "spire", "agent", "join_token", s.token)
	if err != nil {
		s.Stop()
		return nil, err
	}
	agentConf := fmt.Sprintf(agentHCL, filepath.Join(dir, "agent-data"), ports[0], s.AgentSock, cfg.TrustDomain.Name(),
		filepath.Join(dir, "bundle.pem"), filepath.Join(dir, "agent-data"))
	if err := os.WriteFile(filepath.Join(dir, "agent.conf"), []byte(agentConf), 0o600); err != nil {
		s.Stop()
		return nil, err
	}
	if err := s.StartAgent(ctx); err != nil {
		s.Stop()
		return nil, err
	}
	return s, nil
}

// StartAgent (re)starts the agent. After the first start the agent reuses its stored SVID
// and key instead of the (single-use) join token, as a real node agent does after a restart.
func (s *Stack) StartAgent(ctx context.Context) error {
	if s.agent != nil {
		return errors.New("agent already running")
	}
	os.Remove(s.AgentSock)
	args := []string{"run", "-config", filepath.Join(s.cfg.Dir, "agent.conf")}
	if _, err := os.Stat(filepath.Join(s.cfg.Dir, "agent-data", "agent_svid.der")); err != nil {
		args = append(args, "-joinToken", s.token)
	}
	agent, err := s.spawn("spire-agent", "agent.log", args...)
	if err != nil {
		return err
	}
	s.agent = agent
	deadline := time.Now().Add(60 * time.Second)
	for {
		out, err := exec.CommandContext(ctx, filepath.Join(s.cfg.BinDir, "spire-agent"), "healthcheck",
			"-socketPath", s.AgentSock).CombinedOutput()
		if err == nil {
			return nil
		}
		if agent.HasExited() || time.Now().After(deadline) || ctx.Err() != nil {
			s.StopAgent()
			return fmt.Errorf("spire-agent not healthy (see %s): %s", filepath.Join(s.cfg.Dir, "agent.log"), bytes.TrimSpace(out))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// RestartServer stops the server (SIGTERM) and starts it again on the same ports with the
// same datastore and keys, as a redeploy of the server would, and waits until it is ready.
// The agent keeps running and must reconnect on its own.
func (s *Stack) RestartServer(ctx context.Context) error {
	if s.server != nil {
		s.server.Stop(5 * time.Second)
		s.server = nil
	}
	os.Remove(s.ServerSock)
	server, err := s.spawn("spire-server", "server.log", "run", "-config", filepath.Join(s.cfg.Dir, "server.conf"))
	if err != nil {
		return err
	}
	s.server = server
	if err := server.WaitReady(ctx, 60*time.Second, childproc.Get(fmt.Sprintf("http://127.0.0.1:%d/ready", s.healthPort))); err != nil {
		return fmt.Errorf("spire-server did not come back (see %s): %w", filepath.Join(s.cfg.Dir, "server.log"), err)
	}
	return nil
}

// StopAgent kills the agent (SIGKILL: the outage tests want an agent that vanishes, not one
// that says goodbye) and removes its socket.
func (s *Stack) StopAgent() {
	if s.agent == nil {
		return
	}
	s.agent.Kill()
	s.agent = nil
	os.Remove(s.AgentSock)
}

// Stop stops agent and server and removes their sockets.
func (s *Stack) Stop() {
	s.StopAgent()
	if s.server != nil {
		s.server.Stop(5 * time.Second)
		s.server = nil
	}
	os.Remove(s.ServerSock)
}

// Register creates the entries in one batch, parented to this stack's agent.
func (s *Stack) Register(ctx context.Context, entries ...Entry) error {
	type selector struct {
		Type  string `json:"type"`
		Value string `json:"value"`
	}
	type entry struct {
		ParentID    string     `json:"parent_id"`
		SpiffeID    string     `json:"spiffe_id"`
		Selectors   []selector `json:"selectors"`
		X509SVIDTTL int        `json:"x509_svid_ttl,omitempty"`
	}
	var doc struct {
		Entries []entry `json:"entries"`
	}
	for _, e := range entries {
		if !filepath.IsAbs(e.BinaryPath) {
			return fmt.Errorf("entry %s: binary path %q must be absolute", e.ID, e.BinaryPath)
		}
		doc.Entries = append(doc.Entries, entry{ParentID: s.AgentID.String(), SpiffeID: e.ID.String(),
			Selectors:   []selector{{"unix", "path:" + e.BinaryPath}},
			X509SVIDTTL: int(e.TTL / time.Second)})
	}
	b, err := json.Marshal(doc)
	if err != nil {
		return err
	}
	f := filepath.Join(s.cfg.Dir, fmt.Sprintf("entries-%d.json", time.Now().UnixNano()))
	if err := os.WriteFile(f, b, 0o600); err != nil {
		return err
	}
	defer os.Remove(f)
	out, err := s.serverCmd(ctx, "entry", "create", "-data", f)
	if err != nil {
		return err
	}
	if bytes.Contains(out, []byte("Failed")) || bytes.Contains(out, []byte("failed")) {
		return fmt.Errorf("entry create: %s", bytes.TrimSpace(out))
	}
	return nil
}

// Mint issues an X509-SVID for id directly from the server's CA, written as svid.pem,
// key.pem and bundle.pem into dir. Tests use it to impersonate a workload with a genuine
// certificate of this trust domain, without registering a process.
func (s *Stack) Mint(ctx context.Context, id spiffeid.ID, ttl time.Duration, dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	_, err := s.serverCmd(ctx, "x509", "mint", "-spiffeID", id.String(), "-ttl", ttl.String(), "-write", dir)
	return err
}

// BundlePath is the trust bundle the agent was bootstrapped with.
func (s *Stack) BundlePath() string { return filepath.Join(s.cfg.Dir, "bundle.pem") }

// AgentPID returns the agent's process ID, or 0 if it is not running.
func (s *Stack) AgentPID() int {
	if s.agent == nil {
		return 0
	}
	return s.agent.PID()
}

// ServerPID returns the server's process ID, or 0 if it is not running.
func (s *Stack) ServerPID() int {
	if s.server == nil {
		return 0
	}
	return s.server.PID()
}

func (s *Stack) serverCmd(ctx context.Context, args ...string) ([]byte, error) {
	args = append(args, "-socketPath", s.ServerSock)
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, filepath.Join(s.cfg.BinDir, "spire-server"), args...).CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("spire-server %s: %w: %s", strings.Join(args[:2], " "), err, bytes.TrimSpace(out))
	}
	return out, nil
}

// spawn starts one of the SPIRE binaries, logging to logName under the stack's directory and,
// with Config.Log, to that writer too, each line prefixed with the binary's name.
func (s *Stack) spawn(bin, logName string, args ...string) (*childproc.Process, error) {
	var also io.Writer
	if s.cfg.Log != nil {
		also = prefixWriter{s.cfg.Log, bin + ": "}
	}
	return childproc.Start(exec.Command(filepath.Join(s.cfg.BinDir, bin), args...), filepath.Join(s.cfg.Dir, logName), also)
}

// FreePorts returns n distinct loopback ports reserved for this process (localports.Reserve):
// below the ephemeral range and locked against every other process that reserves ports the
// same way, so stacks started in parallel never draw the same port.
func FreePorts(n int) ([]int, error) { return localports.Reserve(n) }

type prefixWriter struct {
	w      io.Writer
	prefix string
}

func (p prefixWriter) Write(b []byte) (int, error) {
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		fmt.Fprintf(p.w, "%s%s\n", p.prefix, sc.Text())
	}
	return len(b), nil
}

const serverHCL = `server {
  bind_address = "127.0.0.1"
  bind_port = "%d"
  socket_path = "%s"
  trust_domain = "%s"
  data_dir = "%s"
  log_level = "WARN"
  ca_key_type = "ec-p256"
  ca_ttl = "24h"
  default_x509_svid_ttl = "%s"
}

plugins {
  DataStore "sql" {
    plugin_data {
      database_type = "sqlite3"
      connection_string = "%s"
    }
  }
  KeyManager "disk" {
    plugin_data {
      keys_path = "%s"
    }
  }
  NodeAttestor "join_token" {
    plugin_data {}
  }
}

health_checks {
  listener_enabled = true
  bind_address = "127.0.0.1"
  bind_port = "%d"
  live_path = "/live"
  ready_path = "/ready"
}
`

const agentHCL = `agent {
  data_dir = "%s"
  log_level = "WARN"
  server_address = "127.0.0.1"
  server_port = "%d"
  socket_path = "%s"
  trust_domain = "%s"
  trust_bundle_path = "%s"
}

plugins {
  NodeAttestor "join_token" {
    plugin_data {}
  }
  KeyManager "disk" {
    plugin_data {
      directory = "%s"
    }
  }
  WorkloadAttestor "unix" {
    plugin_data {
      discover_workload_path = true
    }
  }
}
`
