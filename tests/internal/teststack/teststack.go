// Package teststack starts the local stack (tools/devstack/stack, the code `make dev` runs)
// for the suites that test it end to end: on free ports, so they run beside a developer's
// stack and each other, under a short temporary directory, with the edge's development CA
// and the demo users' passwords read once for every test of the package.
package teststack

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/ztbank/ztbank/devkit/demo"
	"github.com/ztbank/ztbank/devkit/devoidc"
	"github.com/ztbank/ztbank/devkit/localspire"
	"github.com/ztbank/ztbank/libs/transport"
	"github.com/ztbank/ztbank/tools/devstack/stack"
)

// StartTimeout bounds a whole start-up (building the binaries, SPIRE, PostgreSQL, every
// service's readiness) on the loaded 2-core machine the suites share.
const StartTimeout = 15 * time.Minute

// Stack is a running local stack and what its tests need to reach it.
type Stack struct {
	*stack.Stack
	// Dir is the state directory: binaries, sockets, logs, and SVIDs minted by MintSVID.
	Dir string
	// EdgeURL is the edge's base URL without a trailing slash; empty without FrontDoor.
	EdgeURL string
	// Passwords are the demo users' passwords by username; nil without FrontDoor.
	Passwords map[string]string

	edgeCAs *x509.CertPool
}

// Short reports whether -short was given. It parses the flags, so TestMain may call it
// before m.Run.
func Short() bool {
	flag.Parse()
	return testing.Short()
}

// Main is TestMain for a package whose every test needs one shared stack. With -short it
// skips the package, as the integration suites do. Otherwise it starts the stack as opts
// says (progress to stderr unless opts names a writer), calls run with it (run sets the
// package's clients up and returns m.Run()'s code, after any checks of its own), stops the
// stack and exits with that code.
func Main(m *testing.M, prefix string, opts stack.Options, run func(*Stack) int) {
	if Short() {
		fmt.Printf("skipping %s in -short mode: its tests need the local stack\n", filepath.Base(os.Args[0]))
		os.Exit(0)
	}
	os.Exit(startAndRun(prefix, opts, run))
}

func startAndRun(prefix string, opts stack.Options, run func(*Stack) int) int {
	ctx, cancel := context.WithTimeout(context.Background(), StartTimeout)
	defer cancel()
	if opts.Progress == nil {
		opts.Progress = os.Stderr
	}
	st, err := Start(ctx, prefix, opts)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer st.Close()
	return run(st)
}

// Start starts a stack as opts says, under a new temporary directory named after prefix
// (short: SPIRE's Unix socket paths must fit in sockaddr_un, so not t.TempDir() under a long
// test name). Root, StateDir and FreePorts are set here. When the stack does not start, its
// directory is kept and named in the error: its logs say why.
func Start(ctx context.Context, prefix string, opts stack.Options) (*Stack, error) {
	root, err := localspire.RepoRoot()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", prefix)
	if err != nil {
		return nil, err
	}
	opts.Root, opts.StateDir, opts.FreePorts = root, dir, true
	st, err := stack.Start(ctx, opts)
	if err != nil {
		return nil, fmt.Errorf("start local stack (state kept in %s): %w", dir, err)
	}
	s := &Stack{Stack: st, Dir: dir}
	if opts.FrontDoor {
		if err := s.readFrontDoor(); err != nil {
			s.Close()
			return nil, err
		}
	}
	return s, nil
}

func (s *Stack) readFrontDoor() error {
	var err error
	if s.edgeCAs, err = transport.CAPool(s.Edge.CAFile); err != nil {
		return fmt.Errorf("the edge's CA: %w", err)
	}
	if s.Passwords, err = devoidc.ReadSecrets(s.OIDC.PasswordsFile); err != nil {
		return fmt.Errorf("read the demo users' passwords: %w", err)
	}
	s.EdgeURL = strings.TrimSuffix(s.Edge.URL, "/")
	return nil
}

// Close stops the stack and removes its directory. Stop alone keeps the directory, for a
// caller that leaves the logs of a failed run for inspection.
func (s *Stack) Close() {
	s.Stop()
	os.RemoveAll(s.Dir)
}

// EdgeTLS returns a new client TLS configuration that trusts the edge's development CA,
// like `curl --cacert`. Each call returns its own, so a caller may add a certificate.
func (s *Stack) EdgeTLS() *tls.Config {
	return &tls.Config{RootCAs: s.edgeCAs, MinVersion: tls.VersionTLS12}
}

// Login logs user in through the development OIDC provider's real authorization-code +
// PKCE endpoints, as the CLI client, over c.
func (s *Stack) Login(ctx context.Context, c *http.Client, user string) (devoidc.Tokens, error) {
	tok, err := devoidc.Login(ctx, c, s.OIDC.Issuer, devoidc.CLIClientID, user, s.Passwords[user])
	if err != nil {
		return devoidc.Tokens{}, fmt.Errorf("log in %s: %w", user, err)
	}
	return tok, nil
}

// LoginAll logs every demo user in and returns their access tokens by username.
func (s *Stack) LoginAll(ctx context.Context, c *http.Client) (map[string]string, error) {
	tokens := map[string]string{}
	for _, u := range demo.Users() {
		tok, err := s.Login(ctx, c, u.Username)
		if err != nil {
			return nil, err
		}
		tokens[u.Username] = tok.AccessToken
	}
	return tokens, nil
}

// SVID is a genuine X509-SVID with the bundle of its trust domain.
type SVID struct {
	*x509svid.SVID
	Bundle *x509bundle.Bundle
}

// MintSVID has the stack's SPIRE server mint an hour-long SVID for id, as the workload
// itself or an attacker holding its key would present it.
func (s *Stack) MintSVID(ctx context.Context, id spiffeid.ID) (SVID, error) {
	dir := filepath.Join(s.Dir, "minted", strings.NewReplacer("/", "_", ":", "_").Replace(id.String()))
	if err := s.Spire.Mint(ctx, id, time.Hour, dir); err != nil {
		return SVID{}, err
	}
	return LoadSVID(dir, id.TrustDomain())
}

// LoadSVID reads what `spire-server x509 mint -write dir` wrote: svid.pem, key.pem and the
// bundle of td in bundle.pem.
func LoadSVID(dir string, td spiffeid.TrustDomain) (SVID, error) {
	svid, err := x509svid.Load(filepath.Join(dir, "svid.pem"), filepath.Join(dir, "key.pem"))
	if err != nil {
		return SVID{}, err
	}
	bundle, err := x509bundle.Load(td, filepath.Join(dir, "bundle.pem"))
	if err != nil {
		return SVID{}, err
	}
	return SVID{svid, bundle}, nil
}

// TLSCertificate is the SVID as a certificate to present, for clients whose peer is
// verified against another CA (the edge's development CA).
func (v SVID) TLSCertificate() tls.Certificate {
	chain := make([][]byte, len(v.Certificates))
	for i, c := range v.Certificates {
		chain[i] = c.Raw
	}
	return tls.Certificate{Certificate: chain, PrivateKey: v.PrivateKey, Leaf: v.Certificates[0]}
}

// Sample reads svc's /metrics from its plain health port and returns the value of the first
// series matching series, a regular expression for the name and labels; a series the
// service has not exported yet counts as 0, as Prometheus counters start.
func Sample(t *testing.T, svc *stack.Service, series string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + svc.Health + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^` + series + ` (\S+)$`).FindSubmatch(b)
	if m == nil {
		return 0
	}
	v, err := strconv.ParseFloat(string(m[1]), 64)
	if err != nil {
		t.Fatal(err)
	}
	return v
}
