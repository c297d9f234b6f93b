// Package compose runs faults against the docker-compose stack under load: the SPIRE agent
// container stopped for 30 s, the ledger container cut from its network mid-payment, the
// PostgreSQL containers restarted, and a bank-a container's attempt to reach bank-b's
// database. It needs a running stack (make compose-test brings one up, sets
// ZTBANK_COMPOSE_STACK to its stack.json, and takes it down afterwards); without one every
// test says so and skips.
package compose

import (
	"bytes"
	"cmp"
	"context"
	"crypto/tls"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ztbank/ztbank/devkit/demo"
	"github.com/ztbank/ztbank/devkit/devoidc"
	"github.com/ztbank/ztbank/devkit/localspire"
	"github.com/ztbank/ztbank/libs/transport"
	"github.com/ztbank/ztbank/tools/devstack/stack"
)

// envStack names the running compose stack's stack.json (composeinit stack writes it).
const envStack = "ZTBANK_COMPOSE_STACK"

// project is the compose project: docker-compose.yml's name, or ZTBANK_COMPOSE_PROJECT for
// a stack started under another (make compose-test COMPOSE_PROJECT=...).
var project = cmp.Or(os.Getenv("ZTBANK_COMPOSE_PROJECT"), "ztbank")

// env is the running stack as the tests see it; nil when there is none.
var env *stackEnv

type stackEnv struct {
	info     stack.Info
	root     string
	compose  string // the pinned docker-compose binary
	client   *http.Client
	edge     string
	tokens   map[string]string
	loggedIn time.Time
}

func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() {
		fmt.Println("compose: skipped (-short): needs the docker-compose stack")
		os.Exit(m.Run())
	}
	path := os.Getenv(envStack)
	if path == "" {
		fmt.Printf("compose: skipped: %s is not set (make compose-test brings the stack up and sets it)\n", envStack)
		os.Exit(m.Run())
	}
	e, err := connect(path)
	if err != nil {
		fmt.Fprintln(os.Stderr, "compose:", err)
		os.Exit(1)
	}
	env = e
	os.Exit(m.Run())
}

func connect(path string) (*stackEnv, error) {
	if err := exec.Command("docker", "info").Run(); err != nil {
		return nil, fmt.Errorf("%s is set but no Docker Engine answers: %w", envStack, err)
	}
	info, err := stack.ReadInfo(path)
	if err != nil {
		return nil, err
	}
	if info.Edge == nil || info.OIDC == nil || info.PID <= 0 || syscall.Kill(info.PID, 0) != nil {
		return nil, fmt.Errorf("%s does not describe a running compose stack (make compose-up)", path)
	}
	root, err := localspire.RepoRoot()
	if err != nil {
		return nil, err
	}
	roots, err := transport.CAPool(info.Edge.CAFile)
	if err != nil {
		return nil, err
	}
	// Longer than every timeout behind the edge (its upstream and the services' peer calls
	// give up after 30 s), so a fault shows up as the stack's own answer, not ours.
	client := &http.Client{Timeout: 90 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}, MaxIdleConnsPerHost: 64}}
	e := &stackEnv{info: info, root: root, compose: filepath.Join(root, ".dev", "bin", "docker-compose"),
		client: client, edge: strings.TrimSuffix(info.Edge.URL, "/"), tokens: map[string]string{}}
	if err := e.login(); err != nil {
		return nil, err
	}
	return e, nil
}

// tokenRefresh is how old the users' access tokens may get before a test logs everyone in
// again: the dev provider's tokens live 10 minutes, and no fault test runs for 6.
const tokenRefresh = 4 * time.Minute

// login logs every demo user in through the provider's real authorization-code + PKCE
// endpoints.
func (e *stackEnv) login() error {
	passwords, err := devoidc.ReadSecrets(e.info.OIDC.PasswordsFile)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for _, u := range demo.Users() {
		tok, err := devoidc.Login(ctx, e.client, e.info.OIDC.Issuer, devoidc.CLIClientID, u.Username, passwords[u.Username])
		if err != nil {
			return fmt.Errorf("log in %s: %w", u.Username, err)
		}
		e.tokens[u.Username] = tok.AccessToken
	}
	e.loggedIn = time.Now()
	return nil
}

// need skips a test when no compose stack is running.
func need(t *testing.T) *stackEnv {
	t.Helper()
	if env == nil {
		t.Skipf("needs the docker-compose stack: run make compose-test (or make compose-up and set %s)", envStack)
	}
	if time.Since(env.loggedIn) > tokenRefresh {
		if err := env.login(); err != nil {
			t.Fatal(err)
		}
	}
	return env
}

// run executes a command and returns its trimmed standard output.
func run(ctx context.Context, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return strings.TrimSpace(string(out)), fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return strings.TrimSpace(string(out)), nil
}

// composeCmd runs the pinned docker-compose on the stack's project.
func (e *stackEnv) composeCmd(ctx context.Context, args ...string) (string, error) {
	full := append([]string{"-f", filepath.Join(e.root, "docker-compose.yml"), "-p", project}, args...)
	return run(ctx, e.compose, full...)
}

// container returns the ID of a compose service's container.
func (e *stackEnv) container(t *testing.T, service string) string {
	t.Helper()
	id, err := e.composeCmd(t.Context(), "ps", "-q", service)
	if err != nil || id == "" {
		t.Fatalf("container of %s: %q, %v", service, id, err)
	}
	return id
}

// inspect evaluates a docker inspect template on a container.
func inspect(ctx context.Context, id, format string) (string, error) {
	return run(ctx, "docker", "inspect", "-f", format, id)
}

// waitFor polls cond until it holds or the timeout passes. Faults take effect on their own
// schedule (a container stops, a health check turns), so the tests wait for the condition
// itself rather than for a guessed duration.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() (bool, error)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var last error
	for {
		ok, err := cond()
		if ok {
			return
		}
		if err != nil {
			last = err
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s (last error: %v)", what, timeout, last)
		}
		select {
		case <-t.Context().Done():
			t.Fatalf("%s: %v", what, t.Context().Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// healthy reports whether a container runs and its health check passes.
func healthy(ctx context.Context, id string) (bool, error) {
	s, err := inspect(ctx, id, "{{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}{{end}}")
	return s == "running healthy", err
}

// restartState is what changes when Docker restarts a container: the tests compare it
// before and after a fault to show the services recovered by themselves.
func restartState(t *testing.T, id string) string {
	t.Helper()
	s, err := inspect(t.Context(), id, "{{.RestartCount}} {{.State.StartedAt}}")
	if err != nil {
		t.Fatal(err)
	}
	return s
}
