// Command devstack runs the local ztbank stack: `devstack dev` in the foreground until
// Ctrl-C, `devstack up` in the background (returns once healthy), `devstack down` to stop
// it, `devstack status` to show it. Everything it creates lives under .dev/.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/ztbank/ztbank/devkit/localpg"
	"github.com/ztbank/ztbank/devkit/localspire"
	"github.com/ztbank/ztbank/libs/cli"
	"github.com/ztbank/ztbank/libs/migrate"
	"github.com/ztbank/ztbank/libs/topology"
	"github.com/ztbank/ztbank/tools/devstack/obs"
	"github.com/ztbank/ztbank/tools/devstack/stack"
)

func main() { cli.Main("devstack", run) }

const usage = "usage: devstack dev|up|down|status|migrate"

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) < 2 {
		return errors.New(usage)
	}
	root, err := localspire.RepoRoot()
	if err != nil {
		return err
	}
	// ZTBANK_DEV_FREE_PORTS (with ZTBANK_DEV_DIR, see stack.StateDir) lets tests run a
	// second stack beside a developer's own without clashing on the topology's fixed ports.
	state := stack.StateDir(root, getenv)
	freePorts := getenv("ZTBANK_DEV_FREE_PORTS") == "1"
	withObs := getenv("OBS") == "1"
	switch args[1] {
	case "dev":
		// `up` runs this detached and turns the console off: `make console` serves it then,
		// and its one-time URL does not belong in .dev/stack.log.
		return dev(ctx, root, state, freePorts, withObs, getenv("ZTBANK_DEV_CONSOLE") != "0", stdout)
	case "up":
		return up(ctx, args[0], state, stdout)
	case "down":
		return down(state, stdout)
	case "migrate":
		// Adopts the stack's cluster (starting it if it is stopped) and applies migrations.
		c, err := localpg.Start(ctx, filepath.Join(state, "pg"))
		if err != nil {
			return err
		}
		if err := migrate.UpAll(ctx, c.AdminDSN("postgres"), topology.Default(), os.DirFS(filepath.Join(root, "migrations"))); err != nil {
			return err
		}
		fmt.Fprintln(stdout, "migrations applied")
		return nil
	case "status":
		info, err := stack.ReadInfo(filepath.Join(state, "stack.json"))
		if err != nil || !alive(info.PID) {
			return stack.ErrNotRunning
		}
		printTable(stdout, info)
		return nil
	}
	return fmt.Errorf("unknown command %q; %s", args[1], usage)
}

// dev runs the stack in the foreground until ctx is cancelled (Ctrl-C).
func dev(ctx context.Context, root, state string, freePorts, withObs, withConsole bool, stdout io.Writer) error {
	infoPath := filepath.Join(state, "stack.json")
	if info, err := stack.ReadInfo(infoPath); err == nil && alive(info.PID) && info.PID != os.Getpid() {
		return fmt.Errorf("a stack is already running (pid %d); run `make down` first", info.PID)
	}
	os.Remove(infoPath)
	// Each run starts from a clean SPIRE, a freshly migrated and seeded database and fresh
	// binaries: leftovers from a killed run (sockets, datastore) would confuse the new
	// server, and demo data changed by earlier runs (payments, opened accounts) would make
	// the demo and the isolation suite depend on history.
	os.RemoveAll(filepath.Join(state, "spire"))
	if err := resetPostgres(ctx, filepath.Join(state, "pg")); err != nil {
		return err
	}
	if err := os.MkdirAll(state, 0o755); err != nil {
		return err
	}
	start := time.Now()
	// Supervise: a service that crashes or is killed comes back, as under a process manager.
	opts := stack.Options{Root: root, StateDir: state, FreePorts: freePorts, FrontDoor: true, Postgres: true, Supervise: true, Progress: stdout}
	var ep obs.Endpoints
	if withObs {
		// Jaeger and Prometheus come up first so the services' very first spans and scrapes
		// have somewhere to go.
		var stopObs func()
		var err error
		ep, stopObs, err = obs.Start(ctx, filepath.Join(state, "obs"), obs.WithRoot(root), obs.WithProgress(stdout))
		if err != nil {
			return fmt.Errorf("observability backends: %w", err)
		}
		defer stopObs()
		opts.Configure = func(s *stack.Stack) {
			for _, svc := range s.Services {
				svc.Env = append(svc.Env, ep.Env()...)
			}
		}
	}
	s, err := stack.Start(ctx, opts)
	if err != nil {
		return err
	}
	if withObs {
		var targets []obs.Target
		for _, svc := range s.Services {
			targets = append(targets, obs.Target{Workload: svc.Workload.Name, Namespace: svc.Workload.Namespace, Service: svc.Workload.Service, Addr: svc.Health})
		}
		if err := ep.SetTargets(targets); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "==> Jaeger UI %s, Prometheus %s\n", ep.JaegerUI, ep.Prometheus)
	}
	defer func() {
		fmt.Fprintln(stdout, "==> stopping services and SPIRE")
		s.Stop()
		os.Remove(infoPath)
		fmt.Fprintln(stdout, "==> stopped")
	}()
	info := s.Info()
	if err := stack.WriteInfo(infoPath, info); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "==> ready in %s\n\n", time.Since(start).Round(100*time.Millisecond))
	printTable(stdout, info)
	fmt.Fprintf(stdout, "\nstack file: %s\nlogs:       %s\nCtrl-C stops everything.\n", infoPath, filepath.Join(state, "logs"))
	if withConsole {
		startConsole(ctx, root, state, freePorts, info, s.Topo, ep.JaegerUI, stdout)
	}
	<-ctx.Done()
	return nil
}

func printTable(w io.Writer, info stack.Info) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "WORKLOAD\tSPIFFE ID\tmTLS\tHEALTH")
	for _, wl := range info.Workloads {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", wl.Name, wl.SpiffeID, wl.Listen, wl.Health)
	}
	tw.Flush()
	fmt.Fprintf(w, "\nSPIRE agent socket: %s\n", info.AgentSocket)
	if info.Edge != nil {
		fmt.Fprintf(w, "edge (public):      %s   CA: %s\n", info.Edge.URL, info.Edge.CAFile)
	}
	if info.Postgres != nil {
		fmt.Fprintf(w, "PostgreSQL:         %s:%d (TLS, scram-sha-256; service passwords rotate every 5 min, valid 15)\n", info.Postgres.Host, info.Postgres.Port)
	}
	if info.OIDC != nil {
		fmt.Fprintf(w, "OIDC issuer:        %s   demo passwords: %s\n", info.OIDC.Issuer, info.OIDC.PasswordsFile)
		fmt.Fprintf(w, "\nTry it:\n  TOKEN=$(make -s token USER=alice@bank-a)\n  curl --cacert %s -H \"Authorization: Bearer $TOKEN\" %s/bank-a/internal/chain\n",
			info.Edge.CAFile, info.Edge.URL)
	}
}

// up starts `devstack dev` detached, with its output in .dev/stack.log, and returns once
// stack.json reports it ready.
func up(ctx context.Context, self, state string, stdout io.Writer) error {
	infoPath := filepath.Join(state, "stack.json")
	if info, err := stack.ReadInfo(infoPath); err == nil && alive(info.PID) {
		fmt.Fprintf(stdout, "stack already running (pid %d)\n", info.PID)
		return nil
	}
	if err := os.MkdirAll(state, 0o755); err != nil {
		return err
	}
	logPath := filepath.Join(state, "stack.log")
	logf, err := os.Create(logPath)
	if err != nil {
		return err
	}
	defer logf.Close()
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	cmd := exec.Command(exe, "dev")
	cmd.Env = append(os.Environ(), "ZTBANK_DEV_CONSOLE=0")
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return err
	}
	pid := cmd.Process.Pid
	if err := os.WriteFile(filepath.Join(state, "devstack.pid"), []byte(strconv.Itoa(pid)), 0o644); err != nil {
		return err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	fmt.Fprintf(stdout, "==> starting the stack in the background (pid %d, log %s)\n", pid, logPath)
	shown := 0
	for {
		select {
		case err := <-exited:
			return fmt.Errorf("stack exited during start-up (%v):\n%s", err, readFrom(logPath, 0))
		case <-ctx.Done():
			syscall.Kill(pid, syscall.SIGTERM)
			return ctx.Err()
		case <-time.After(300 * time.Millisecond):
		}
		// Relay progress so a cold SPIRE build is visibly alive.
		out := readFrom(logPath, shown)
		fmt.Fprint(stdout, out)
		shown += len(out)
		if info, err := stack.ReadInfo(infoPath); err == nil && info.PID == pid && info.Status == "ready" {
			fmt.Fprintln(stdout, "==> stack is up; `make down` stops it")
			return nil
		}
	}
}

func readFrom(path string, off int) string {
	b, _ := os.ReadFile(path)
	if off >= len(b) {
		return ""
	}
	return string(b[off:])
}

// down stops a background stack and waits until its processes, sockets and ports are gone.
func down(state string, stdout io.Writer) error {
	pidPath := filepath.Join(state, "devstack.pid")
	b, err := os.ReadFile(pidPath)
	if err != nil {
		fmt.Fprintln(stdout, "no stack running")
		return nil
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return fmt.Errorf("%s: %w", pidPath, err)
	}
	info, _ := stack.ReadInfo(filepath.Join(state, "stack.json"))
	if alive(pid) {
		fmt.Fprintf(stdout, "==> stopping stack (pid %d)\n", pid)
		syscall.Kill(pid, syscall.SIGTERM)
		deadline := time.Now().Add(60 * time.Second)
		for alive(pid) {
			if time.Now().After(deadline) {
				syscall.Kill(-pid, syscall.SIGKILL)
				return fmt.Errorf("stack (pid %d) did not stop within 60s; killed it", pid)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	os.Remove(pidPath)
	var addrs []string
	for _, w := range info.Workloads {
		addrs = append(addrs, w.Listen, w.Health)
	}
	if err := stack.WaitPortsFree(addrs, 10*time.Second); err != nil {
		return err
	}
	for _, sock := range []string{info.AgentSocket, info.SpireServer} {
		if sock != "" {
			if _, err := os.Stat(sock); err == nil {
				return fmt.Errorf("socket %s left behind", sock)
			}
		}
	}
	fmt.Fprintln(stdout, "==> stack stopped")
	return nil
}

// alive reports whether a process with pid exists (and is not a zombie we reaped).
func alive(pid int) bool {
	if pid <= 0 {
		return false
	}
	if err := syscall.Kill(pid, 0); err != nil {
		return false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	fields := strings.Fields(string(b))
	return len(fields) < 3 || fields[2] != "Z"
}

// resetPostgres stops a cluster left running under dir (a killed stack cannot stop it) and
// removes it. The cluster's files belong to the postgres user when we run as root, so the
// removal goes through localpg, which knows how it started the server.
func resetPostgres(ctx context.Context, dir string) error {
	if _, err := os.Stat(dir); err != nil {
		return nil
	}
	if c, err := localpg.Start(ctx, dir); err == nil {
		c.Stop()
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("remove the previous database cluster %s: %w", dir, err)
	}
	return nil
}
