// Package stack brings up the local ztbank stack: a real SPIRE server and agent, one
// registration entry per workload keyed by that workload's own binary path, and the
// services, each started from its own copy of its binary so `unix:path` selectors tell the
// two gateways apart. Tests use it to run the stack exactly as `make dev` does.
package stack

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/ztbank/ztbank/devkit/atomicfile"
	"github.com/ztbank/ztbank/devkit/childproc"
	"github.com/ztbank/ztbank/devkit/localpg"
	"github.com/ztbank/ztbank/devkit/localspire"
	"github.com/ztbank/ztbank/libs/topology"
)

// StateDir is where the local stack keeps its state under the repository root: .dev, or
// $ZTBANK_DEV_DIR, so tests can run a second stack beside a developer's own without clashing
// on .dev/.
func StateDir(root string, getenv func(string) string) string {
	if d := getenv("ZTBANK_DEV_DIR"); d != "" {
		return d
	}
	return filepath.Join(root, ".dev")
}

// Options configure a stack.
type Options struct {
	Root     string             // repository root (holds go.work)
	StateDir string             // where binaries, sockets, logs and stack.json go
	Topology *topology.Topology // default: the embedded topology
	// Ports remaps every listen address to a free port instead of the topology's fixed
	// local ports, so tests can run beside a developer's `make dev`.
	FreePorts bool
	// SVIDTTL sets the X509-SVID TTL for every workload entry; zero means one hour.
	SVIDTTL  time.Duration
	Progress io.Writer // step-by-step progress for humans; nil discards
	// Services limits which workloads are started (names from the topology); nil means all
	// services that have a binary under services/.
	Services []string
	// FrontDoor starts the dev CA, the OIDC provider and the edge (and includes the edge
	// in the default service set). `make dev` turns it on.
	FrontDoor bool
	// Configure, when set, may adjust services (for example extra environment) after the
	// stack has assigned addresses and configured its parts, just before they start.
	Configure func(*Stack)
	// Postgres starts PostgreSQL (TLS, scram-sha-256), migrates, seeds and rotates the
	// service roles' 15-minute passwords. `make dev` turns it on.
	Postgres bool
	// Supervise restarts a service whose process exits while the stack runs (a crash, an
	// OOM kill, kill -9), as a process manager or Kubernetes would. `make dev` turns it on;
	// the chaos suite relies on it.
	Supervise bool
	// BuildTags are passed to go build for the service binaries (tools/pathbench builds its
	// reference stacks with bench-only tags); empty for every other stack.
	BuildTags string
}

// Stack is a running local stack.
type Stack struct {
	opts     Options
	Spire    *localspire.Stack
	BinDir   string
	Topo     *topology.Topology
	Services map[string]*Service // by workload name
	Edge     EdgeInfo
	OIDC     OIDCInfo
	Postgres PostgresInfo

	pg           *localpg.Cluster
	rotateMu     sync.Mutex // one rotation at a time: the schedule and RotateNow must not interleave
	rotations    []rotation
	stopRotation context.CancelFunc

	stopping bool // Stop has begun: exits are expected, not restarted

	oidc      interface{ Close() error }
	oidcLog   *os.File
	edgeFiles [3]string // dev CA, edge certificate, edge key
	mu        sync.Mutex
}

// Service is one running workload process.
type Service struct {
	Workload topology.Workload
	Binary   string
	Listen   string
	Health   string
	Public   string // client-facing address (edge only)
	LogPath  string
	Env      []string

	mu        sync.Mutex
	proc      *childproc.Process
	started   time.Time
	restarts  int
	crashLoop int
}

// Info is what stack.json records for tools and tests.
type Info struct {
	Status      string         `json:"status"`
	PID         int            `json:"pid"`
	TrustDomain string         `json:"trust_domain"`
	SpireServer string         `json:"spire_server_socket"`
	AgentSocket string         `json:"agent_socket"`
	Bundle      string         `json:"trust_bundle"`
	SpireBin    string         `json:"spire_bin"`
	Workloads   []WorkloadInfo `json:"workloads"`
	Edge        *EdgeInfo      `json:"edge,omitempty"`
	Postgres    *PostgresInfo  `json:"postgres,omitempty"`
	OIDC        *OIDCInfo      `json:"oidc,omitempty"`
}

// WorkloadInfo describes one workload in stack.json.
type WorkloadInfo struct {
	Name     string `json:"name"`
	SpiffeID string `json:"spiffe_id"`
	Binary   string `json:"binary"`
	Listen   string `json:"listen"`
	Health   string `json:"health"`
	Log      string `json:"log"`
}

func (o *Options) progress(format string, args ...any) {
	if o.Progress != nil {
		fmt.Fprintf(o.Progress, "==> "+format+"\n", args...)
	}
}

// Start builds, registers and starts everything and waits until every service is ready.
// On error everything already started is stopped.
func Start(ctx context.Context, opts Options) (_ *Stack, err error) {
	if opts.Topology == nil {
		opts.Topology = topology.Default()
	}
	if opts.SVIDTTL == 0 {
		opts.SVIDTTL = time.Hour
	}
	s := &Stack{opts: opts, Topo: opts.Topology, Services: map[string]*Service{},
		BinDir: filepath.Join(opts.StateDir, "bin")}
	defer func() {
		if err != nil {
			s.Stop()
		}
	}()
	spireBin, err := localspire.Binaries(ctx, progressOr(opts.Progress))
	if err != nil {
		return nil, err
	}
	workloads := s.selected()
	opts.progress("building %d service binaries", len(workloads))
	if err := s.build(ctx, workloads); err != nil {
		return nil, err
	}
	opts.progress("starting SPIRE server and agent (trust domain %s)", s.Topo.TrustDomain.Name())
	sp, err := localspire.Start(ctx, localspire.Config{BinDir: spireBin, Dir: filepath.Join(opts.StateDir, "spire"),
		// The server default covers the agent's own SVID: it must outlive a workload-SVID
		// outage test (the agent re-attests with it), so it is never shorter than an hour;
		// workload entries carry opts.SVIDTTL themselves.
		TrustDomain: s.Topo.TrustDomain, DefaultTTL: max(opts.SVIDTTL, time.Hour)})
	if err != nil {
		return nil, err
	}
	s.Spire = sp
	opts.progress("registering %d workload entries (unix:path selectors)", len(workloads))
	var entries []localspire.Entry
	for _, w := range workloads {
		entries = append(entries, localspire.Entry{ID: w.ID, BinaryPath: s.binaryPath(w), TTL: opts.SVIDTTL})
	}
	if err := sp.Register(ctx, entries...); err != nil {
		return nil, err
	}
	// PostgreSQL and the OIDC provider bind their ports first; the services' ports are drawn
	// afterwards, all in one call, so no two listeners can be handed the same free port.
	if opts.Postgres {
		opts.progress("starting PostgreSQL (TLS, scram-sha-256) under %s", filepath.Join(opts.StateDir, "pg"))
		if err := s.startPostgres(ctx); err != nil {
			return nil, err
		}
	}
	if opts.FrontDoor {
		opts.progress("starting the dev CA and OIDC provider")
		if err := s.startFrontDoor(ctx); err != nil {
			return nil, err
		}
	}
	if err := s.assignAddrs(workloads); err != nil {
		return nil, err
	}
	if opts.Postgres {
		if err := s.configurePostgres(ctx); err != nil {
			return nil, err
		}
	}
	if opts.FrontDoor {
		s.configureEdge()
	}
	if opts.Configure != nil {
		opts.Configure(s)
	}
	for _, w := range workloads {
		opts.progress("starting %s", w.Name)
		if err := s.startService(w); err != nil {
			return nil, err
		}
	}
	opts.progress("waiting for %d services to report ready", len(workloads))
	if err := s.WaitReady(ctx, 90*time.Second); err != nil {
		return nil, err
	}
	return s, nil
}

func progressOr(w io.Writer) io.Writer {
	if w == nil {
		return io.Discard
	}
	return w
}

// selected returns the workloads to run: those with a service binary in the repo.
func (s *Stack) selected() []topology.Workload {
	var out []topology.Workload
	for _, w := range s.Topo.Workloads {
		if s.opts.Services != nil && !slices.Contains(s.opts.Services, w.Name) {
			continue
		}
		// The edge needs the OIDC provider and dev CA that only FrontDoor provides.
		if s.opts.Services == nil && w.Tenant == "" && !s.opts.FrontDoor {
			continue
		}
		if _, err := os.Stat(filepath.Join(s.opts.Root, "services", w.Service, "main.go")); err != nil {
			continue
		}
		out = append(out, w)
	}
	return out
}

// binaryPath is the per-workload binary: .dev/bin/<namespace>/<service>/<service>.
func (s *Stack) binaryPath(w topology.Workload) string {
	p, _ := filepath.Abs(filepath.Join(s.BinDir, w.Namespace, w.Service, w.Service))
	return p
}

// build compiles each service once and copies it to every workload path that runs it.
func (s *Stack) build(ctx context.Context, workloads []topology.Workload) error {
	built := map[string]string{}
	for _, w := range workloads {
		if _, ok := built[w.Service]; ok {
			continue
		}
		out := filepath.Join(s.BinDir, "build", w.Service)
		args := []string{"build", "-o", out}
		if s.opts.BuildTags != "" {
			args = append(args, "-tags", s.opts.BuildTags)
		}
		cmd := exec.CommandContext(ctx, "go", append(args, "./services/"+w.Service)...)
		cmd.Dir = s.opts.Root
		if b, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("build %s: %w\n%s", w.Service, err, b)
		}
		built[w.Service] = out
	}
	for _, w := range workloads {
		dst := s.binaryPath(w)
		if err := copyFile(built[w.Service], dst); err != nil {
			return err
		}
	}
	return nil
}

func copyFile(src, dst string) error {
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	tmp := dst + ".tmp"
	out, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o755)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	if err := out.Close(); err != nil {
		return err
	}
	// Rename so a running old binary keeps its inode; writing in place would fail with
	// "text file busy".
	return os.Rename(tmp, dst)
}

func (s *Stack) assignAddrs(workloads []topology.Workload) error {
	if err := os.MkdirAll(filepath.Join(s.opts.StateDir, "logs"), 0o755); err != nil {
		return err
	}
	var ports []int
	if s.opts.FreePorts {
		n := 0
		for _, w := range workloads {
			n += 2
			if w.Public != "" {
				n++
			}
		}
		var err error
		if ports, err = FreePorts(n); err != nil {
			return err
		}
	}
	next := func() string {
		p := ports[0]
		ports = ports[1:]
		return fmt.Sprintf("127.0.0.1:%d", p)
	}
	for _, w := range workloads {
		svc := &Service{Workload: w, Binary: s.binaryPath(w), Listen: w.Listen, Health: w.Health, Public: w.Public,
			LogPath: filepath.Join(s.opts.StateDir, "logs", strings.ReplaceAll(w.Name, "/", "-")+".log")}
		if s.opts.FreePorts {
			svc.Listen, svc.Health = next(), next()
			if w.Public != "" {
				svc.Public = next()
			}
		}
		s.Services[w.Name] = svc
	}
	return nil
}

// PeerURLs builds the ZTBANK_PEER_URL_TEMPLATE-free addressing for free-port runs: each
// service gets its peers' actual addresses through ZTBANK_PEER_<NAME> variables.
func (s *Stack) serviceEnv(svc *Service) []string {
	env := []string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + os.Getenv("HOME"),
		"ZTBANK_WORKLOAD=" + svc.Workload.Name,
		"ZTBANK_TRANSPORT_MODE=direct",
		"SPIFFE_ENDPOINT_SOCKET=unix://" + s.Spire.AgentSock,
		"ZTBANK_LISTEN=" + svc.Listen,
		"ZTBANK_HEALTH_LISTEN=" + svc.Health,
	}
	for name, peer := range s.Services {
		env = append(env, "ZTBANK_PEER_ADDR_"+envName(name)+"="+peer.Listen)
	}
	sort.Strings(env)
	return append(env, svc.Env...)
}

// envName turns a workload name into an environment variable suffix: bank-a/gateway →
// BANK_A_GATEWAY.
func envName(name string) string {
	return strings.ToUpper(strings.NewReplacer("/", "_", "-", "_").Replace(name))
}

func (s *Stack) startService(w topology.Workload) error {
	svc := s.Services[w.Name]
	svc.mu.Lock()
	defer svc.mu.Unlock()
	cmd := exec.Command(svc.Binary)
	cmd.Env = s.serviceEnv(svc)
	p, err := childproc.Start(cmd, svc.LogPath, nil)
	if err != nil {
		return fmt.Errorf("%s: %w", w.Name, err)
	}
	go func() {
		<-p.Exited()
		s.supervise(svc, p)
	}()
	svc.proc, svc.started = p, time.Now()
	return nil
}

// restartBackoff bounds how fast a crashing service is restarted, so a binary that dies at
// start-up cannot spin the machine; it doubles per restart in a row up to restartBackoffMax.
const (
	restartBackoff    = 200 * time.Millisecond
	restartBackoffMax = 5 * time.Second
)

// supervise restarts svc after its process p exited, unless the stack is stopping or
// supervision is off. A service that ran for a while restarts at once; one that keeps dying
// backs off.
func (s *Stack) supervise(svc *Service, p *childproc.Process) {
	if !s.opts.Supervise {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	svc.mu.Lock()
	current := svc.proc == p
	svc.mu.Unlock()
	if s.stopping || !current {
		return
	}
	wait := time.Duration(0)
	if time.Since(svc.startedAt()) < restartBackoffMax {
		wait = min(restartBackoff<<min(svc.crashLoop, 5), restartBackoffMax)
		svc.crashLoop++
	} else {
		svc.crashLoop = 0
	}
	s.opts.progress("%s exited (%s); restarting it in %s", svc.Workload.Name, p.Cmd.ProcessState, wait)
	// s.mu is released while waiting so Stop is not held up by a back-off.
	s.mu.Unlock()
	time.Sleep(wait)
	s.mu.Lock()
	if s.stopping {
		return
	}
	if err := s.startService(svc.Workload); err != nil {
		s.opts.progress("restart %s: %v", svc.Workload.Name, err)
		return
	}
	svc.mu.Lock()
	svc.restarts++
	svc.mu.Unlock()
}

// WaitReady polls every service's /readyz until all answer 200.
func (s *Stack) WaitReady(ctx context.Context, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for name, svc := range s.Services {
		for {
			err := svc.ready(ctx)
			if err == nil {
				break
			}
			if !svc.running() && !s.opts.Supervise {
				return fmt.Errorf("%s exited before becoming ready; see %s:\n%s", name, svc.LogPath, tail(svc.LogPath, 5))
			}
			if time.Now().After(deadline) || ctx.Err() != nil {
				return fmt.Errorf("%s not ready after %s: %v; see %s", name, timeout, err, svc.LogPath)
			}
			time.Sleep(150 * time.Millisecond)
		}
	}
	return nil
}

// ReadinessCheckLimit is how long a service's /readyz may spend on its dependency checks
// (libs/server Runtime.Ready bounds its database ping to 2 s). A probe must wait longer than
// that, or a slow but passing ping reads as "not ready".
const ReadinessCheckLimit = 2 * time.Second

// readyProbeTimeout is ReadinessCheckLimit plus room for the HTTP exchange on a busy machine.
const readyProbeTimeout = ReadinessCheckLimit + 3*time.Second

// ready returns the service's current /readyz error, or nil.
func (svc *Service) ready(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, readyProbeTimeout)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+svc.Health+"/readyz", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("readyz %d: %s", resp.StatusCode, strings.TrimSpace(string(b)))
	}
	return nil
}

// Ready reports the service's readiness.
func (svc *Service) Ready(ctx context.Context) error { return svc.ready(ctx) }

// running reports whether the service's current process is alive.
func (svc *Service) running() bool {
	svc.mu.Lock()
	defer svc.mu.Unlock()
	return svc.proc != nil && !svc.proc.HasExited()
}

func (svc *Service) startedAt() time.Time {
	svc.mu.Lock()
	defer svc.mu.Unlock()
	return svc.started
}

// PID returns the service's current process ID (a new one after a supervised restart).
func (svc *Service) PID() int {
	svc.mu.Lock()
	defer svc.mu.Unlock()
	if svc.proc == nil {
		return 0
	}
	return svc.proc.PID()
}

// Restarts is how many times the supervisor has restarted the service.
func (svc *Service) Restarts() int {
	svc.mu.Lock()
	defer svc.mu.Unlock()
	return svc.restarts
}

// Kill sends SIGKILL to the service's process (kill -9: no shutdown, no draining) and
// returns once it is gone. Under Supervise the stack then starts a new one.
func (svc *Service) Kill() error {
	svc.mu.Lock()
	p := svc.proc
	svc.mu.Unlock()
	if p == nil || p.HasExited() {
		return fmt.Errorf("%s is not running", svc.Workload.Name)
	}
	p.Kill()
	return nil
}

// Exited returns a channel closed when the service's current process exits.
func (svc *Service) Exited() <-chan struct{} {
	svc.mu.Lock()
	defer svc.mu.Unlock()
	if svc.proc == nil {
		return nil
	}
	return svc.proc.Exited()
}

// SetEnv replaces the service's extra environment for its next start (a supervised
// restart); the running process keeps the one it started with.
func (svc *Service) SetEnv(env []string) {
	svc.mu.Lock()
	defer svc.mu.Unlock()
	svc.Env = env
}

func tail(path string, n int) string {
	b, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// Stop terminates the services (SIGTERM, then SIGKILL after a grace period), then SPIRE,
// and removes sockets. It is safe to call more than once.
func (s *Stack) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stopping = true
	var wg sync.WaitGroup
	for _, svc := range s.Services {
		svc.mu.Lock()
		p := svc.proc
		svc.proc = nil
		svc.mu.Unlock()
		if p != nil {
			wg.Go(func() { p.Stop(25 * time.Second) })
		}
	}
	wg.Wait()
	s.stopFrontDoor()
	s.stopPostgres()
	if s.Spire != nil {
		s.Spire.Stop()
		s.Spire = nil
	}
}

// Info returns what stack.json holds.
func (s *Stack) Info() Info {
	info := Info{Status: "ready", PID: os.Getpid(), TrustDomain: s.Topo.TrustDomain.Name()}
	if s.Spire != nil {
		info.SpireServer, info.AgentSocket, info.Bundle = s.Spire.ServerSock, s.Spire.AgentSock, s.Spire.BundlePath()
	}
	for _, w := range s.Topo.Workloads {
		svc, ok := s.Services[w.Name]
		if !ok {
			continue
		}
		info.Workloads = append(info.Workloads, WorkloadInfo{Name: w.Name, SpiffeID: w.ID.String(),
			Binary: svc.Binary, Listen: svc.Listen, Health: svc.Health, Log: svc.LogPath})
	}
	if s.Edge.URL != "" {
		e := s.Edge
		info.Edge = &e
	}
	if s.OIDC.Issuer != "" {
		o := s.OIDC
		info.OIDC = &o
	}
	if s.Postgres.Port != 0 {
		p := s.Postgres
		info.Postgres = &p
	}
	return info
}

// WriteInfo writes stack.json atomically.
func WriteInfo(path string, info Info) error {
	b, err := json.MarshalIndent(info, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.Write(path, append(b, '\n'), 0o644)
}

// ReadInfo reads stack.json.
func ReadInfo(path string) (Info, error) {
	var info Info
	b, err := os.ReadFile(path)
	if err != nil {
		return info, err
	}
	if err := json.Unmarshal(b, &info); err != nil {
		return info, fmt.Errorf("%s: %w", path, err)
	}
	return info, nil
}

// ErrNotRunning is returned when no stack is recorded.
var ErrNotRunning = errors.New("no local stack is running")
