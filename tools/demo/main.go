// Command demo narrates the zero-trust story against the running local stack: users reading
// what they may, being refused what they may not (and by which layer), an idempotent payment,
// staff limits, and a rogue workload refused at the mTLS handshake. It reads .dev/stack.json
// (start the stack with `make up`) and exits non-zero if any step does not end as narrated.
package main

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/ztbank/ztbank/devkit/demo"
	"github.com/ztbank/ztbank/devkit/devoidc"
	"github.com/ztbank/ztbank/devkit/localspire"
	"github.com/ztbank/ztbank/libs/cli"
	"github.com/ztbank/ztbank/libs/problem"
	"github.com/ztbank/ztbank/libs/topology"
	"github.com/ztbank/ztbank/libs/transport"
	"github.com/ztbank/ztbank/tools/devstack/stack"
)

func main() { cli.Main("demo", run) }

// run plays the scenario. Every step states what must happen; a step that ends otherwise
// is reported and makes run fail, so the demo doubles as a smoke test of the stack.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	stackFile := fs.String("stack", ".dev/stack.json", "the running stack's stack.json (make up writes it)")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	info, err := stack.ReadInfo(*stackFile)
	if err != nil {
		return fmt.Errorf("%w: start the stack with make up", err)
	}
	if info.Edge == nil || info.OIDC == nil || syscall.Kill(info.PID, 0) != nil {
		return fmt.Errorf("%s does not describe a running stack with an edge: start it with make up", *stackFile)
	}
	s, err := newSession(info)
	if err != nil {
		return err
	}
	s.out = stdout
	alice, carol, bob := demo.UserID("alice@bank-a").String(), demo.UserID("carol@bank-a").String(), demo.UserID("bob@bank-b").String()
	bobCurrent, daveCurrent := demo.AccountID("bob@bank-b", "current").String(), demo.AccountID("dave@bank-b", "current").String()

	s.chapter("1. alice (bank-a customer) reads her profile and accounts")
	s.step(ctx, "alice@bank-a", "GET", "/bank-a/v1/users/me", "", nil, want{200, ""})
	s.step(ctx, "alice@bank-a", "GET", "/bank-a/v1/users/"+alice+"/accounts", "", nil, want{200, ""})

	s.chapter("2. alice tries carol's and bob's data")
	s.step(ctx, "alice@bank-a", "GET", "/bank-a/v1/users/"+carol, "", nil, want{403, "policy"})
	s.step(ctx, "alice@bank-a", "GET", "/bank-a/v1/users/"+bob, "", nil, want{403, "policy"})
	s.step(ctx, "alice@bank-a", "GET", "/bank-b/v1/accounts/"+bobCurrent+"/balance", "", nil, want{403, "edge"})

	s.chapter("3. bob pays dave 10.00 EUR; the retry with the same Idempotency-Key is not charged twice")
	before := s.balance(ctx, "bob@bank-b", bobCurrent)
	key := "demo-" + randomHex()
	pay := `{"from_account":"` + bobCurrent + `","to_account":"` + daveCurrent + `","amount":{"amount":1000,"currency":"EUR"},"reference":"demo"}`
	s.step(ctx, "bob@bank-b", "POST", "/bank-b/v1/payments", pay, map[string]string{"Idempotency-Key": key}, want{201, ""})
	afterFirst := s.balance(ctx, "bob@bank-b", bobCurrent)
	resp := s.step(ctx, "bob@bank-b", "POST", "/bank-b/v1/payments", pay, map[string]string{"Idempotency-Key": key}, want{201, ""})
	afterRetry := s.balance(ctx, "bob@bank-b", bobCurrent)
	s.check(fmt.Sprintf("bob's balance %d → %d after the payment → %d after the retry (replayed: %s)",
		before, afterFirst, afterRetry, resp.Header.Get("Idempotent-Replayed")),
		afterFirst == before-1000 && afterRetry == afterFirst && resp.Header.Get("Idempotent-Replayed") == "true")

	s.chapter("4. erin (bank-b staff) reads a customer's balance but cannot move money or read bank-a")
	s.step(ctx, "erin@bank-b", "GET", "/bank-b/v1/accounts/"+bobCurrent+"/balance", "", nil, want{200, ""})
	s.step(ctx, "erin@bank-b", "POST", "/bank-b/v1/payments", pay, map[string]string{"Idempotency-Key": "demo-" + randomHex()}, want{403, "policy"})
	s.step(ctx, "erin@bank-b", "GET", "/bank-a/v1/users/me", "", nil, want{403, "edge"})

	s.chapter("5. a rogue process holding the payment service's SVID reads bank-a users directly")
	s.rogue(ctx, "bank-b/payment", "bank-a/user", "/v1/users/"+alice)

	fmt.Fprintf(stdout, "\n%d steps, %d as narrated\n", s.steps, s.steps-s.failed)
	if s.failed > 0 {
		return fmt.Errorf("%d steps did not end as narrated", s.failed)
	}
	return nil
}

type want struct {
	status int
	layer  string // "" for success
}

type session struct {
	info   stack.Info
	topo   *topology.Topology
	edge   *http.Client
	login  func(ctx context.Context, username string) (string, error)
	tokens map[string]string
	out    io.Writer
	steps  int
	failed int
}

func newSession(info stack.Info) (*session, error) {
	pool, err := transport.CAPool(info.Edge.CAFile)
	if err != nil {
		return nil, err
	}
	client := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	passwords, err := devoidc.ReadSecrets(info.OIDC.PasswordsFile)
	if err != nil {
		return nil, err
	}
	return &session{info: info, topo: topology.Default(), edge: client, tokens: map[string]string{},
		login: func(ctx context.Context, username string) (string, error) {
			tok, err := devoidc.Login(ctx, client, info.OIDC.Issuer, devoidc.CLIClientID, username, passwords[username])
			return tok.AccessToken, err
		}}, nil
}

func (s *session) chapter(title string) { fmt.Fprintf(s.out, "\n== %s\n", title) }

func (s *session) token(ctx context.Context, username string) string {
	if t, ok := s.tokens[username]; ok {
		return t
	}
	t, err := s.login(ctx, username)
	if err != nil {
		fmt.Fprintf(s.out, "   login %s failed: %v\n", username, err)
	}
	s.tokens[username] = t
	return t
}

// step sends one request through the edge as username and prints request, outcome,
// refusing layer and the audit decision ID.
func (s *session) step(ctx context.Context, username, method, path, body string, headers map[string]string, w want) *http.Response {
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, _ := http.NewRequestWithContext(ctx, method, s.info.Edge.URL+path, rd)
	req.Header.Set("Authorization", "Bearer "+s.token(ctx, username))
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	fmt.Fprintf(s.out, "-> %s: %s %s\n", username, method, path)
	resp, err := s.edge.Do(req)
	if err != nil {
		s.check(fmt.Sprintf("transport error: %v", err), false)
		return &http.Response{Header: http.Header{}}
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	layer, decision := refusedBy(resp, b)
	outcome := fmt.Sprintf("%d %s", resp.StatusCode, http.StatusText(resp.StatusCode))
	if layer != "" {
		outcome += ", refused by " + layer
	}
	if decision != "" {
		outcome += ", decision " + decision
	}
	if resp.StatusCode < 300 {
		outcome += ": " + summary(b)
	}
	s.check(outcome, resp.StatusCode == w.status && layer == w.layer)
	return resp
}

func (s *session) check(outcome string, ok bool) {
	s.steps++
	mark := "ok"
	if !ok {
		mark = "UNEXPECTED"
		s.failed++
	}
	fmt.Fprintf(s.out, "   <- %s [%s]\n", outcome, mark)
}

func (s *session) balance(ctx context.Context, username, account string) int64 {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.info.Edge.URL+"/bank-b/v1/accounts/"+account+"/balance", nil)
	req.Header.Set("Authorization", "Bearer "+s.token(ctx, username))
	resp, err := s.edge.Do(req)
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	var v struct {
		Balance struct {
			Amount int64 `json:"amount"`
		} `json:"balance"`
	}
	if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&v) != nil {
		return -1
	}
	return v.Balance.Amount
}

// rogue mints a genuine SVID for caller from the local SPIRE server (as a process that
// stole that workload's identity would hold) and calls target directly.
func (s *session) rogue(ctx context.Context, caller, target, path string) {
	from, _ := s.topo.Workload(caller)
	to, _ := s.topo.Workload(target)
	addr := ""
	for _, w := range s.info.Workloads {
		if w.Name == target {
			addr = w.Listen
		}
	}
	fmt.Fprintf(s.out, "-> process with %s's SVID: GET https://%s%s (%s)\n", caller, addr, path, target)
	dir, err := os.MkdirTemp("", "ztdemo")
	if err != nil {
		s.check(err.Error(), false)
		return
	}
	defer os.RemoveAll(dir)
	client, err := s.minted(ctx, from.ID, to.ID, dir)
	if err != nil {
		s.check(fmt.Sprintf("could not mint an SVID: %v", err), false)
		return
	}
	resp, err := client.Get("https://" + addr + path)
	if err == nil {
		resp.Body.Close()
		s.check(fmt.Sprintf("%d: the service answered a workload the topology does not allow", resp.StatusCode), false)
		return
	}
	s.check("refused by mtls: "+err.Error(), strings.Contains(err.Error(), "tls:"))
}

func (s *session) minted(ctx context.Context, id, server spiffeid.ID, dir string) (*http.Client, error) {
	dir0 := s.info.SpireBin
	if dir0 == "" {
		// stack.json leaves it empty when SPIRE came from .dev/bin; ask the same lookup.
		d, err := localspire.Binaries(ctx, io.Discard)
		if err != nil {
			return nil, err
		}
		dir0 = d
	}
	bin := filepath.Join(dir0, "spire-server")
	if fi, err := os.Stat(dir0); err == nil && !fi.IsDir() {
		bin = dir0
	}
	out, err := exec.CommandContext(ctx, bin, "x509", "mint", "-spiffeID", id.String(), "-ttl", "10m",
		"-write", dir, "-socketPath", s.info.SpireServer).CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("spire-server x509 mint: %w: %s", err, out)
	}
	svid, err := x509svid.Load(filepath.Join(dir, "svid.pem"), filepath.Join(dir, "key.pem"))
	if err != nil {
		return nil, err
	}
	bundle, err := x509bundle.Load(id.TrustDomain(), filepath.Join(dir, "bundle.pem"))
	if err != nil {
		return nil, err
	}
	cfg := tlsconfig.MTLSClientConfig(svid, bundle, tlsconfig.AuthorizeID(server))
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg}}, nil
}

// refusedBy names the layer that refused a response the way the e2e suite does: from the
// problem type that layer writes (libs/problem's refusal marks), never from the status code,
// which several layers share.
func refusedBy(resp *http.Response, body []byte) (layer, decision string) {
	var p struct {
		Type       string `json:"type"`
		DecisionID string `json:"decision_id"`
	}
	_ = json.Unmarshal(body, &p)
	if resp.StatusCode < 300 {
		return "", ""
	}
	switch p.Type {
	case problem.TypePolicy:
		return "policy", p.DecisionID
	case problem.TypeInternalToken:
		return "jwt", ""
	case problem.TypeEdge:
		return "edge", ""
	case problem.TypePeer:
		return "peer", ""
	case problem.TypeNotFound:
		return "database", ""
	case problem.TypeBusinessRule:
		return "rule", ""
	case problem.TypeNoRoute:
		return "no route", ""
	}
	return fmt.Sprintf("http %d", resp.StatusCode), p.DecisionID
}

func summary(b []byte) string {
	s := strings.TrimSpace(string(b))
	if len(s) > 160 {
		s = s[:160] + "…"
	}
	return s
}

func randomHex() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
