// Command pg-entrypoint is the entrypoint of ztbank/postgres:15 (deploy/images/README.md
// states its contract). It initialises the data directory on first start — scram-sha-256
// for every connection, TLS required, the superuser's password from a file — and then runs
// PostgreSQL as its child, turning SIGTERM into PostgreSQL's fast shutdown.
//
//	pg-entrypoint               initialise if needed, then run postgres
//	pg-entrypoint healthcheck   exit 0 when the server accepts connections
package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"syscall"

	"github.com/ztbank/ztbank/libs/cli"
)

func main() { cli.Main("pg-entrypoint", run) }

// Fixed by the image: Debian's PostgreSQL 15 and the data directory the image pre-creates
// owned by postgres (a named volume mounted there inherits that owner).
const (
	binDir  = "/usr/lib/postgresql/15/bin"
	dataDir = "/var/lib/postgresql/data"
	hbaFile = "/etc/ztbank/postgres/pg_hba.conf"
	port    = "5432"
	// copiedKey is where the TLS key goes when PostgreSQL would refuse the given file
	// (another owner, or readable by others): inside the data directory, which is ours.
	copiedKey = "ztbank-server.key"
)

type config struct {
	passwordFile string
	certFile     string
	keyFile      string
}

func loadConfig(getenv func(string) string) (config, error) {
	c := config{
		passwordFile: getenv("ZTBANK_PG_SUPERUSER_PASSWORD_FILE"),
		certFile:     getenv("ZTBANK_PG_TLS_CERT"),
		keyFile:      getenv("ZTBANK_PG_TLS_KEY"),
	}
	var missing []string
	for name, v := range map[string]string{
		"ZTBANK_PG_SUPERUSER_PASSWORD_FILE": c.passwordFile,
		"ZTBANK_PG_TLS_CERT":                c.certFile,
		"ZTBANK_PG_TLS_KEY":                 c.keyFile,
	} {
		if v == "" {
			missing = append(missing, name)
		}
	}
	if len(missing) > 0 {
		sort.Strings(missing)
		return config{}, fmt.Errorf("required: %s (TLS and a superuser password are not optional)", strings.Join(missing, ", "))
	}
	return c, nil
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) > 1 {
		switch args[1] {
		case "healthcheck":
			return healthcheck(ctx)
		case "postgres":
		default:
			return fmt.Errorf("unknown command %q (usage: pg-entrypoint [postgres|healthcheck])", args[1])
		}
	}
	cfg, err := loadConfig(getenv)
	if err != nil {
		return err
	}
	if err := checkReadable(cfg.certFile, "TLS certificate (ZTBANK_PG_TLS_CERT)"); err != nil {
		return err
	}
	if err := initialise(ctx, cfg, stdout, stderr); err != nil {
		return err
	}
	key, err := usableKey(cfg.keyFile)
	if err != nil {
		return err
	}
	return serve(ctx, cfg, key, stdout, stderr)
}

func checkReadable(name, what string) error {
	f, err := os.Open(name)
	if err != nil {
		return fmt.Errorf("%s: %w (it must be readable by uid %d)", what, err, os.Getuid())
	}
	return f.Close()
}

// initialise runs initdb when the data directory holds no cluster yet. The superuser's
// password is read by initdb from the file itself, so it never appears in an argument list.
func initialise(ctx context.Context, cfg config, stdout, stderr io.Writer) error {
	if _, err := os.Stat(filepath.Join(dataDir, "PG_VERSION")); err == nil {
		return nil
	}
	pw, err := os.ReadFile(cfg.passwordFile)
	if err != nil {
		return fmt.Errorf("superuser password (ZTBANK_PG_SUPERUSER_PASSWORD_FILE): %w (it must be readable by uid %d)", err, os.Getuid())
	}
	if first, _, _ := strings.Cut(string(pw), "\n"); strings.TrimSpace(first) == "" {
		return fmt.Errorf("superuser password file %s: the first line is empty", cfg.passwordFile)
	}
	if ents, err := os.ReadDir(dataDir); err != nil {
		return fmt.Errorf("data directory: %w", err)
	} else if len(ents) > 0 {
		return fmt.Errorf("data directory %s is not empty but holds no cluster (no PG_VERSION): refusing to initialise over it", dataDir)
	}
	fmt.Fprintf(stdout, "pg-entrypoint: initialising %s\n", dataDir)
	cmd := exec.CommandContext(ctx, filepath.Join(binDir, "initdb"),
		"--pgdata", dataDir,
		"--username", "postgres",
		"--pwfile", cfg.passwordFile,
		"--auth-host", "scram-sha-256",
		"--auth-local", "scram-sha-256",
		"--encoding", "UTF8",
		"--locale", "C.UTF-8",
		"--data-checksums",
	)
	cmd.Stdout, cmd.Stderr = stdout, stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("initdb: %w", err)
	}
	return nil
}

// usableKey returns a key file PostgreSQL accepts: it refuses a key that is not owned by its
// user with mode 0600 or stricter (or root-owned 0640), which is what a bind-mounted secret
// usually is. Such a key is copied to a 0600 file in the data directory on every start, so a
// renewed key is picked up by a restart.
func usableKey(name string) (string, error) {
	st, err := os.Stat(name)
	if err != nil {
		return "", fmt.Errorf("TLS key (ZTBANK_PG_TLS_KEY): %w", err)
	}
	if sys, ok := st.Sys().(*syscall.Stat_t); ok && int(sys.Uid) == os.Getuid() && st.Mode().Perm()&0o077 == 0 {
		return name, nil
	}
	b, err := os.ReadFile(name)
	if err != nil {
		return "", fmt.Errorf("TLS key (ZTBANK_PG_TLS_KEY): %w (it must be readable by uid %d)", err, os.Getuid())
	}
	dst := filepath.Join(dataDir, copiedKey)
	tmp := dst + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return "", fmt.Errorf("copy TLS key: %w", err)
	}
	if err := os.Chmod(tmp, 0o600); err != nil { // WriteFile keeps an existing file's mode
		return "", fmt.Errorf("copy TLS key: %w", err)
	}
	if err := os.Rename(tmp, dst); err != nil {
		return "", fmt.Errorf("copy TLS key: %w", err)
	}
	return dst, nil
}

// serverArgs are given on the command line on every start, so the contract (TLS on, our
// pg_hba.conf, listen address) holds whatever postgresql.conf in the volume says.
func serverArgs(cfg config, key string) []string {
	settings := []string{
		"listen_addresses=0.0.0.0",
		"port=" + port,
		"ssl=on",
		"ssl_cert_file=" + cfg.certFile,
		"ssl_key_file=" + key,
		"ssl_min_protocol_version=TLSv1.2",
		"hba_file=" + hbaFile,
		"password_encryption=scram-sha-256",
		// TCP only: a Unix socket would need a writable /run/postgresql, and the image may
		// run with a read-only root filesystem.
		"unix_socket_directories=",
		// The image carries no LLVM (see the rootfs recipe).
		"jit=off",
	}
	args := []string{"-D", dataDir}
	for _, s := range settings {
		args = append(args, "-c", s)
	}
	return args
}

// serve runs postgres as a child and waits for it. When ctx ends (SIGTERM or SIGINT to this
// process, as `docker stop` sends) postgres gets SIGINT: its fast shutdown, which ends
// sessions and checkpoints. SIGTERM to postgres itself would be a smart shutdown that waits
// for every client to leave, which docker's stop timeout would cut with SIGKILL.
func serve(ctx context.Context, cfg config, key string, stdout, stderr io.Writer) error {
	cmd := exec.CommandContext(ctx, filepath.Join(binDir, "postgres"), serverArgs(cfg, key)...)
	cmd.Stdout, cmd.Stderr = stdout, stderr
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGINT) }
	// WaitDelay stays zero: after the signal, wait for postgres however long it takes.
	quit := make(chan os.Signal, 1)
	signal.Notify(quit, syscall.SIGQUIT) // immediate shutdown, passed through as is
	defer signal.Stop(quit)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start postgres: %w", err)
	}
	go func() {
		for s := range quit {
			cmd.Process.Signal(s)
		}
	}()
	err := cmd.Wait()
	if ctx.Err() != nil && cmd.ProcessState != nil && cmd.ProcessState.Success() {
		return nil // shut down as asked
	}
	if err != nil {
		return fmt.Errorf("postgres: %w", err)
	}
	return errors.New("postgres exited on its own")
}

// healthcheck asks the server over TCP with pg_isready, which reports a server that answers
// the protocol (even one that would then ask for a password) as accepting connections.
func healthcheck(ctx context.Context) error {
	cmd := exec.CommandContext(ctx, filepath.Join(binDir, "pg_isready"),
		"--host", "127.0.0.1", "--port", port, "--username", "postgres", "--dbname", "postgres",
		"--timeout", "3", "--quiet")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if err == nil {
		return nil
	}
	var exit *exec.ExitError
	if !errors.As(err, &exit) {
		return fmt.Errorf("healthcheck: %w", err)
	}
	reason := map[int]string{
		1: "the server is rejecting connections (starting up or shutting down)",
		2: "no response",
		3: "no attempt made (bad parameters)",
	}[exit.ExitCode()]
	return fmt.Errorf("healthcheck: PostgreSQL on 127.0.0.1:%s is not accepting connections: %s", port, reason)
}
