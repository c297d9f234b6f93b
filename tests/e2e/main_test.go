package e2e

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"

	"github.com/ztbank/ztbank/devkit/devoidc"
	"github.com/ztbank/ztbank/devkit/localspire"
	"github.com/ztbank/ztbank/libs/topology"
	"github.com/ztbank/ztbank/libs/transport"
	"github.com/ztbank/ztbank/tests/internal/teststack"
	"github.com/ztbank/ztbank/tools/devstack/stack"
)

// Environment variables that point the suite at a deployment other than the local stack.
const (
	envEdgeURL  = "ZTBANK_E2E_EDGE_URL"  // e.g. https://ztbank.example.com
	envCAFile   = "ZTBANK_E2E_CA_FILE"   // PEM bundle that verifies the edge; empty: system roots
	envTokenCmd = "ZTBANK_E2E_TOKEN_CMD" // shell command printing an access token; {user} is replaced
	envStack    = "ZTBANK_E2E_STACK"     // stack.json of an already running local stack
)

var (
	flagTarget = flag.String("target", "", "local (in-process stack, or -stack) or remote (needs "+envEdgeURL+"); default: remote when "+envEdgeURL+" is set")
	flagStack  = flag.String("stack", "", "stack.json of a running local stack (make up); default: start one in-process")
	flagReport = flag.String("report", "", "write the isolation matrix (Markdown) here, and HTML beside it")
)

// deployment is what the suite runs against.
type deployment struct {
	name    string
	edgeURL string
	edge    *http.Client
	token   func(ctx context.Context, username string) (string, error)
	// mint writes a genuine SVID for any ID (svid.pem, key.pem, bundle.pem) into dir; nil
	// when the suite cannot mint (remote targets), and direct cases are skipped.
	mint     func(ctx context.Context, id spiffeid.ID, dir string) error
	services map[string]string // workload name → mTLS listen address
	health   map[string]string // workload name → plain health/metrics address
	st       *stack.Stack      // in-process stack only
	tmp      string

	mu       sync.Mutex
	tokens   map[string]string
	internal map[string]issuedToken // username → internal JWT from ext_authz
	clients  map[[2]string]*http.Client
	payments map[string][2]string // owner → ID and request body of the payment paymentOf made

	edgeMu      sync.Mutex
	edgeClients map[string]*http.Client // workload → edge client presenting its SVID
}

// local reports whether the suite runs against a stack whose SVIDs it can mint: every case
// can run there, so a skipped case is a failure.
func (d *deployment) local() bool { return d.mint != nil }

var (
	topo   = topology.Default()
	target *deployment
)

func TestMain(m *testing.M) {
	if teststack.Short() {
		fmt.Println("e2e: -short: only the offline tests (oracle, matrix staleness, broken policy) run")
		os.Exit(m.Run())
	}
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	tmp, err := os.MkdirTemp("", "zte2e") // SVIDs the direct cases mint go under it
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(tmp)
	ctx, cancel := context.WithTimeout(context.Background(), teststack.StartTimeout)
	defer cancel()
	d, stop, err := connect(ctx, tmp)
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	defer stop()
	target = d
	fmt.Printf("e2e: target %s, edge %s\n", d.name, d.edgeURL)
	return m.Run()
}

// connect picks the deployment from flags and environment: a remote edge, a running local
// stack, or a fresh in-process stack on free ports (what `make test` and CI use).
func connect(ctx context.Context, tmp string) (*deployment, func(), error) {
	d := &deployment{tmp: tmp, tokens: map[string]string{}, clients: map[[2]string]*http.Client{}}
	mode := *flagTarget
	if mode == "" {
		mode = "local"
		if os.Getenv(envEdgeURL) != "" {
			mode = "remote"
		}
	}
	switch mode {
	case "remote":
		return d, func() {}, d.remote()
	case "local":
	default:
		return nil, nil, fmt.Errorf("-target=%q: want local or remote", mode)
	}
	path := *flagStack
	if path == "" {
		path = os.Getenv(envStack)
	}
	if path != "" {
		return d, func() {}, d.fromStackFile(path)
	}
	st, err := teststack.Start(ctx, "ztstk", stack.Options{FrontDoor: true, Postgres: true, Progress: os.Stderr})
	if err != nil {
		return nil, nil, err
	}
	d.st = st.Stack
	d.name = "local (in-process stack)"
	d.mint = func(ctx context.Context, id spiffeid.ID, dir string) error {
		return st.Spire.Mint(ctx, id, time.Hour, dir)
	}
	d.services, d.health = map[string]string{}, map[string]string{}
	for name, svc := range st.Services {
		d.services[name], d.health[name] = svc.Listen, svc.Health
	}
	if err := d.localFrontDoor(st.Edge.URL, st.Edge.CAFile, st.OIDC.Issuer, st.OIDC.PasswordsFile); err != nil {
		st.Close()
		return nil, nil, err
	}
	return d, st.Close, nil
}

func (d *deployment) fromStackFile(path string) error {
	info, err := stack.ReadInfo(path)
	if err != nil {
		return fmt.Errorf("read %s (is the stack up? make up): %w", path, err)
	}
	if info.PID <= 0 || syscall.Kill(info.PID, 0) != nil {
		return fmt.Errorf("%s names process %d, which is not running: start the stack with make up", path, info.PID)
	}
	if info.Edge == nil || info.OIDC == nil {
		return fmt.Errorf("%s has no edge or OIDC provider", path)
	}
	d.name = "local (" + path + ")"
	d.services, d.health = map[string]string{}, map[string]string{}
	for _, w := range info.Workloads {
		d.services[w.Name], d.health[w.Name] = w.Listen, w.Health
	}
	spireBin := info.SpireBin
	if spireBin == "" {
		// stack.json leaves it empty when SPIRE came from .dev/bin; ask the same lookup.
		if spireBin, err = localspire.Binaries(context.Background(), io.Discard); err != nil {
			return err
		}
	}
	server := filepath.Join(spireBin, "spire-server")
	if fi, err := os.Stat(spireBin); err == nil && !fi.IsDir() {
		server = spireBin
	}
	d.mint = func(ctx context.Context, id spiffeid.ID, dir string) error {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return err
		}
		out, err := exec.CommandContext(ctx, server, "x509", "mint", "-spiffeID", id.String(), "-ttl", "1h",
			"-write", dir, "-socketPath", info.SpireServer).CombinedOutput()
		if err != nil {
			return fmt.Errorf("spire-server x509 mint: %w: %s", err, out)
		}
		return nil
	}
	return d.localFrontDoor(info.Edge.URL, info.Edge.CAFile, info.OIDC.Issuer, info.OIDC.PasswordsFile)
}

// localFrontDoor logs users in headlessly through the development OIDC provider's real
// authorization-code + PKCE endpoints.
func (d *deployment) localFrontDoor(edgeURL, caFile, issuer, passwordsFile string) error {
	client, err := httpsClient(caFile)
	if err != nil {
		return err
	}
	passwords, err := devoidc.ReadSecrets(passwordsFile)
	if err != nil {
		return err
	}
	d.edgeURL, d.edge = strings.TrimSuffix(edgeURL, "/"), client
	d.token = func(ctx context.Context, username string) (string, error) {
		tok, err := devoidc.Login(ctx, client, issuer, devoidc.CLIClientID, username, passwords[username])
		if err != nil {
			return "", fmt.Errorf("log in %s: %w", username, err)
		}
		return tok.AccessToken, nil
	}
	return nil
}

func (d *deployment) remote() error {
	d.name = "remote"
	d.edgeURL = strings.TrimSuffix(os.Getenv(envEdgeURL), "/")
	cmd := os.Getenv(envTokenCmd)
	if d.edgeURL == "" || cmd == "" {
		return fmt.Errorf("-target=remote needs %s and %s (e.g. %q)", envEdgeURL, envTokenCmd, "make -s token USER={user}")
	}
	client, err := httpsClient(os.Getenv(envCAFile))
	if err != nil {
		return err
	}
	d.edge = client
	d.token = func(ctx context.Context, username string) (string, error) {
		c := exec.CommandContext(ctx, "sh", "-c", strings.ReplaceAll(cmd, "{user}", username))
		c.Stderr = os.Stderr
		out, err := c.Output()
		if err != nil {
			return "", fmt.Errorf("%s for %s: %w", envTokenCmd, username, err)
		}
		return strings.TrimSpace(string(out)), nil
	}
	return nil
}

func httpsClient(caFile string) (*http.Client, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile != "" {
		pool, err := transport.CAPool(caFile)
		if err != nil {
			return nil, err
		}
		cfg.RootCAs = pool
	}
	return &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg}}, nil
}

// userToken returns the access token for username, logging in once per run.
func (d *deployment) userToken(ctx context.Context, username string) (string, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if tok, ok := d.tokens[username]; ok {
		return tok, nil
	}
	tok, err := d.token(ctx, username)
	if err != nil {
		return "", err
	}
	d.tokens[username] = tok
	return tok, nil
}

var errCannotMint = errors.New("direct-to-service cases need SVIDs, which only a local stack can mint")

// direct returns an mTLS client holding a genuine SVID for caller that accepts only server.
func (d *deployment) direct(ctx context.Context, caller, server spiffeid.ID) (*http.Client, error) {
	if d.mint == nil {
		return nil, errCannotMint
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	key := [2]string{caller.String(), server.String()}
	if c, ok := d.clients[key]; ok {
		return c, nil
	}
	dir := filepath.Join(d.tmp, "svid", strings.NewReplacer("/", "_", ":", "_").Replace(caller.String()))
	if _, err := os.Stat(filepath.Join(dir, "svid.pem")); err != nil {
		if err := d.mint(ctx, caller, dir); err != nil {
			return nil, err
		}
	}
	svid, err := teststack.LoadSVID(dir, caller.TrustDomain())
	if err != nil {
		return nil, err
	}
	cfg := tlsconfig.MTLSClientConfig(svid, svid.Bundle, tlsconfig.AuthorizeID(server))
	c := mtlsClient(cfg, 10*time.Second)
	d.clients[key] = c
	return c, nil
}

// needLive skips tests that need a running deployment (under -short).
func needLive(t *testing.T) *deployment {
	t.Helper()
	if target == nil {
		t.Skip("needs a running deployment; skipped under -short")
	}
	return target
}
