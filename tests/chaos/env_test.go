// Package chaos runs the local stack (tools/devstack/stack, the same code `make dev` runs)
// under a steady load of payments and reads through the real edge, injects one fault at a
// time and reports, per fault, how many requests failed, how long the stack took to recover
// and whether the money invariants held. TestSoak runs the same load for a long time across
// SVID and password rotations and samples each service's memory, goroutines and descriptors.
// Both are opt-in (make chaos, make chaos-short, make soak): they start a whole stack.
package chaos

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ztbank/ztbank/devkit/demo"
	"github.com/ztbank/ztbank/devkit/devoidc"
	"github.com/ztbank/ztbank/tests/internal/teststack"
	"github.com/ztbank/ztbank/tools/devstack/stack"
)

// requestTimeout bounds one HTTP attempt. The services' own deadlines are shorter, so an
// attempt that hits it is a hang, not a slow answer.
const requestTimeout = 20 * time.Second

// env is one running stack and a client of its edge.
type env struct {
	st     *teststack.Stack
	dir    string // the stack's state directory; tests keep their own files under it too
	edge   string
	client *http.Client
	tokens *tokenSource
}

// startEnv starts a stack with free ports under a short temporary directory (SPIRE's
// socket paths must stay short) and stops it when t ends.
func startEnv(t *testing.T, ctx context.Context, configure func(*stack.Options)) *env {
	t.Helper()
	opts := stack.Options{FrontDoor: true, Postgres: true, Supervise: true, Progress: testWriter{t}}
	if configure != nil {
		configure(&opts)
	}
	st, err := teststack.Start(ctx, "ztchaos", opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		st.Stop()
		if t.Failed() {
			t.Logf("stack state kept for inspection: %s", st.Dir)
			return
		}
		os.RemoveAll(st.Dir)
	})
	tr := &http.Transport{TLSClientConfig: st.EdgeTLS(), MaxIdleConnsPerHost: 64}
	e := &env{st: st, dir: st.Dir, edge: st.EdgeURL,
		client: &http.Client{Timeout: requestTimeout, Transport: tr}}
	e.tokens = &tokenSource{e: e, cur: map[string]devoidc.Tokens{}}
	for _, u := range demo.Users() {
		if _, err := e.tokens.get(ctx, u.Username); err != nil {
			t.Fatalf("log in %s: %v", u.Username, err)
		}
	}
	return e
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}

// tokenSource logs the demo users in and logs them in again before their access token
// expires, as a real client refreshes: a run longer than the token lifetime must not fail
// on expiry. The margin is two request timeouts, so a token handed out is still valid when
// the request carrying it reaches the edge, even after a retry.
type tokenSource struct {
	e   *env
	mu  sync.Mutex
	cur map[string]devoidc.Tokens
}

const tokenMargin = 2 * requestTimeout

func (s *tokenSource) get(ctx context.Context, user string) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if tok, ok := s.cur[user]; ok && time.Until(tok.Expiry) > tokenMargin {
		return tok.AccessToken, nil
	}
	tok, err := s.e.st.Login(ctx, s.e.client, user)
	if err != nil {
		return "", err
	}
	s.cur[user] = tok
	return tok.AccessToken, nil
}

// cached returns the user's current token without logging in (the OIDC fault uses it to
// show that issued tokens keep working while the provider is down).
func (s *tokenSource) cached(user string) devoidc.Tokens {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cur[user]
}

// waitFor polls cond until it returns nil or the timeout passes, returning the last error.
func waitFor(ctx context.Context, timeout, every time.Duration, cond func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("after %s: %w", timeout, err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last: %v)", ctx.Err(), err)
		case <-time.After(every):
		}
	}
}

// refreshAll logs every user in again now.
func (s *tokenSource) refreshAll(ctx context.Context) error {
	s.mu.Lock()
	users := make([]string, 0, len(s.cur))
	for u := range s.cur {
		users = append(users, u)
	}
	s.cur = map[string]devoidc.Tokens{}
	s.mu.Unlock()
	for _, u := range users {
		if _, err := s.get(ctx, u); err != nil {
			return err
		}
	}
	return nil
}

func (s *tokenSource) earliestExpiry() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	var min time.Time
	for _, t := range s.cur {
		if min.IsZero() || t.Expiry.Before(min) {
			min = t.Expiry
		}
	}
	return min
}

func devoidcLogin(ctx context.Context, e *env, user string) (devoidc.Tokens, error) {
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	return e.st.Login(ctx, e.client, user)
}
