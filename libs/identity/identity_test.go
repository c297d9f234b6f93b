package identity

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/ztbank/ztbank/devkit/fakeclock"
	"github.com/ztbank/ztbank/devkit/spiffetest"
	"github.com/ztbank/ztbank/devkit/syncbuf"
)

// fakeClock is the Source's clock in these tests: readiness is judged against it, so the
// tests move time instead of sleeping through an SVID's life.
var (
	td       = spiffeid.RequireTrustDomainFromString("ztbank.local")
	workload = spiffeid.RequireFromPath(td, "/ns/bank-a/sa/gateway")
	t0       = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
)

// newWatcher returns a Source that is not connected to any agent: the tests play the
// Workload API by calling the watcher callbacks go-spiffe would call. Its log is locked: the
// watcher callbacks run on go-spiffe's goroutine in production.
func newWatcher(clk *fakeclock.Clock, opts ...Option) (*Source, *syncbuf.Buffer) {
	logs := &syncbuf.Buffer{}
	cfg := defaultConfig()
	cfg.addr, cfg.reg, cfg.clock = "unix:///run/test/agent.sock", nil, clk.Now
	cfg.log = slog.New(slog.NewTextHandler(logs, nil))
	for _, o := range opts {
		o(&cfg)
	}
	return &Source{cfg: cfg, updated: make(chan struct{}), done: make(chan struct{})}, logs
}

// ca is a throwaway SPIFFE CA dated from the tests' clock, t0.
type ca struct{ *spiffetest.CA }

func newCA(t *testing.T) ca {
	t.Helper()
	return ca{spiffetest.NewCA(t, td, spiffetest.WithClock(func() time.Time { return t0 }))}
}

// update is the X509Context an agent would push: one SVID for id valid until notAfter.
func (c ca) update(t *testing.T, id spiffeid.ID, notAfter time.Time) *workloadapi.X509Context {
	t.Helper()
	return &workloadapi.X509Context{SVIDs: []*x509svid.SVID{c.SVIDUntil(t, id, notAfter)},
		Bundles: x509bundle.NewSet(c.Bundle())}
}

var errAgentGone = status.Error(codes.Unavailable, "connection error: dial unix /run/test/agent.sock: connect: no such file or directory")

// TestKeepsSVIDThroughAgentOutage: a lost Workload API connection must not take the
// workload's identity away. The last SVID and bundle keep serving, the loss is visible
// (Connected, one log line per failure), and readiness still follows only the SVID's
// remaining validity.
func TestKeepsSVIDThroughAgentOutage(t *testing.T) {
	clk := fakeclock.New(t0)
	s, logs := newWatcher(clk)
	c := newCA(t)
	first := c.update(t, workload, t0.Add(time.Hour))
	s.OnX509ContextUpdate(first)

	s.OnX509ContextWatchError(errAgentGone)
	s.OnX509ContextWatchError(errAgentGone)

	got, err := s.GetX509SVID()
	if err != nil {
		t.Fatalf("GetX509SVID() during the outage: %v", err)
	}
	if got != first.DefaultSVID() {
		t.Error("the outage replaced the current SVID")
	}
	if b, err := s.GetX509BundleForTrustDomain(td); err != nil || !b.Equal(first.Bundles.Bundles()[0]) {
		t.Errorf("GetX509BundleForTrustDomain() during the outage = %v, %v; want the last bundle", b, err)
	}
	if s.Connected() {
		t.Error("Connected() = true after a watch error")
	}
	if err := s.Ready(); err != nil {
		t.Errorf("Ready() with an hour of validity left and the agent away = %v, want nil", err)
	}
	if n := strings.Count(logs.String(), "workload API watch failed; keeping current SVID"); n != 2 {
		t.Errorf("logged the lost connection %d times for 2 failures:\n%s", n, logs)
	}

	// The agent returns with a fresh SVID: it is served at once, and the watch is healthy.
	clk.Set(t0.Add(40 * time.Minute))
	second := c.update(t, workload, t0.Add(2*time.Hour))
	s.OnX509ContextUpdate(second)
	if got, _ := s.GetX509SVID(); got != second.DefaultSVID() {
		t.Error("the returned agent's SVID is not served")
	}
	if !s.Connected() {
		t.Error("Connected() = false after the agent pushed an update")
	}
	if !strings.Contains(logs.String(), "reconnected=true") {
		t.Errorf("the update after the outage was not logged as a reconnection:\n%s", logs)
	}
}

// TestCancellationIsNotAnOutage: Close cancels the watch; that must not count or log as a
// lost agent.
func TestCancellationIsNotAnOutage(t *testing.T) {
	clk := fakeclock.New(t0)
	s, logs := newWatcher(clk)
	s.OnX509ContextUpdate(newCA(t).update(t, workload, t0.Add(time.Hour)))
	for _, err := range []error{context.Canceled, status.Error(codes.Canceled, "context canceled")} {
		s.OnX509ContextWatchError(err)
	}
	if !s.Connected() || strings.Contains(logs.String(), "watch failed") {
		t.Errorf("cancellation treated as an outage: Connected() = %v, logs:\n%s", s.Connected(), logs)
	}
}

// TestReadinessFollowsRemainingValidity: not ready only when less than the minimum validity
// is left, whether or not the agent is reachable; the error says how long is left and why
// it was not renewed.
func TestReadinessFollowsRemainingValidity(t *testing.T) {
	minValidity := defaultConfig().minValidity
	if minValidity != 30*time.Second {
		t.Fatalf("default minimum validity = %v, want 30s (ADR 0002)", minValidity)
	}
	notAfter := t0.Add(time.Hour)
	for _, tc := range []struct {
		name      string
		left      time.Duration
		agentDown bool
		wantReady bool
	}{
		{"fresh", time.Hour, false, true},
		{"fresh, agent down", time.Hour, true, true},
		{"one second above the minimum, agent down", minValidity + time.Second, true, true},
		{"exactly the minimum", minValidity, true, true},
		{"one second below the minimum, agent down", minValidity - time.Second, true, false},
		{"below the minimum, agent up but not renewing", minValidity - time.Second, false, false},
		{"expired", -time.Second, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clk := fakeclock.New(t0)
			s, _ := newWatcher(clk)
			s.OnX509ContextUpdate(newCA(t).update(t, workload, notAfter))
			if tc.agentDown {
				s.OnX509ContextWatchError(errAgentGone)
			}
			clk.Set(notAfter.Add(-tc.left))
			err := s.Ready()
			if got := err == nil; got != tc.wantReady {
				t.Fatalf("Ready() = %v with %v left, want ready=%v", err, tc.left, tc.wantReady)
			}
			if err == nil {
				return
			}
			if !errors.Is(err, ErrNoSVID) {
				t.Errorf("Ready() = %v, want it to wrap ErrNoSVID", err)
			}
			for _, want := range []string{workload.String(), "unix:///run/test/agent.sock"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("Ready() = %q, want it to name %s", err, want)
				}
			}
			if tc.agentDown && !strings.Contains(err.Error(), "no such file or directory") {
				t.Errorf("Ready() = %q, want the last watch error in it", err)
			}
		})
	}
}

// TestMinValidityOption: the readiness margin is configuration, and it is what Ready uses.
func TestMinValidityOption(t *testing.T) {
	clk := fakeclock.New(t0)
	s, _ := newWatcher(clk, WithMinValidity(5*time.Minute))
	s.OnX509ContextUpdate(newCA(t).update(t, workload, t0.Add(10*time.Minute)))
	clk.Set(t0.Add(5*time.Minute - time.Second)) // 5m01s left
	if err := s.Ready(); err != nil {
		t.Errorf("Ready() with 5m01s left and a 5m minimum = %v", err)
	}
	clk.Set(t0.Add(5*time.Minute + time.Second)) // 4m59s left
	if err := s.Ready(); err == nil {
		t.Error("Ready() with 4m59s left and a 5m minimum = nil")
	}
}

// TestNothingBeforeTheFirstSVID: until the agent delivered, every accessor refuses.
func TestNothingBeforeTheFirstSVID(t *testing.T) {
	s, _ := newWatcher(fakeclock.New(t0))
	if _, err := s.GetX509SVID(); !errors.Is(err, ErrNoSVID) {
		t.Errorf("GetX509SVID() = %v, want ErrNoSVID", err)
	}
	if _, err := s.GetX509BundleForTrustDomain(td); !errors.Is(err, ErrNoSVID) {
		t.Errorf("GetX509BundleForTrustDomain() = %v, want ErrNoSVID", err)
	}
	if err := s.Ready(); !errors.Is(err, ErrNoSVID) {
		t.Errorf("Ready() = %v, want ErrNoSVID", err)
	}
	if got := []any{s.ID().IsZero(), s.NotAfter().IsZero(), s.Leaf() == nil}; !cmp.Equal(got, []any{true, true, true}) {
		t.Errorf("ID zero, NotAfter zero, Leaf nil = %v, want all true", got)
	}
}

// TestNewFailsWithoutAgent: New waits no longer than its start timeout and names the socket
// it tried, so an operator knows where to look. The socket is a real unix socket path on
// which nothing listens.
func TestNewFailsWithoutAgent(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "agent.sock")
	const timeout = 300 * time.Millisecond
	start := time.Now()
	_, err := New(t.Context(), WithAddr("unix://"+sock), WithStartTimeout(timeout), WithRegisterer(nil),
		WithLogger(slog.New(slog.DiscardHandler)))
	if !errors.Is(err, ErrNoSVID) || !strings.Contains(err.Error(), sock) {
		t.Fatalf("New() = %v, want ErrNoSVID naming %s", err, sock)
	}
	// The bound is the start timeout, not a fixed wait: a generous ceiling for a loaded box.
	if elapsed := time.Since(start); elapsed > timeout+10*time.Second {
		t.Errorf("New() took %v with a %v start timeout", elapsed, timeout)
	}
}

// TestNewWithUnresponsiveAgent is New against a listener that accepts and then closes
// connections: it must not report success without an SVID.
func TestNewWithUnresponsiveAgent(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "agent.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	if _, err := New(t.Context(), WithAddr("unix://"+sock), WithStartTimeout(300*time.Millisecond), WithRegisterer(nil),
		WithLogger(slog.New(slog.DiscardHandler))); !errors.Is(err, ErrNoSVID) {
		t.Fatalf("New() against an agent that never answers = %v, want ErrNoSVID", err)
	}
}
