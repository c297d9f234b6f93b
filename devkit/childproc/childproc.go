// Package childproc starts and stops the local stack's background processes (SPIRE, the
// services, Jaeger, Prometheus) the one way they must run: each in a process group of its
// own, so a stop reaches whatever it started; killed when the process that started it dies
// (Pdeathsig), so a crashed test or a Ctrl-C leaves nothing holding ports and sockets; and
// its output appended to a log file that outlives it.
package childproc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"
)

// Process is a started child. Only Start's goroutine waits for it (a second Wait races with
// the first under go test -race); Exited reports when it has.
type Process struct {
	Cmd    *exec.Cmd
	exited chan struct{}
}

// Start starts cmd with its output appended to logPath (created 0600: a service's log may
// name its database role and files) and, when also is not nil, copied to also.
func Start(cmd *exec.Cmd, logPath string, also io.Writer) (*Process, error) {
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	var w io.Writer = logf
	if also != nil {
		w = io.MultiWriter(logf, also)
	}
	cmd.Stdout, cmd.Stderr = w, w
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	// With also, the output goes through a pipe, and Wait waits for the pipe to close: a
	// grandchild that kept it open must not hold Exited back for ever.
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start %s: %w", filepath.Base(cmd.Path), err)
	}
	p := &Process{Cmd: cmd, exited: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		logf.Close()
		close(p.exited)
	}()
	return p, nil
}

// PID is the process ID.
func (p *Process) PID() int { return p.Cmd.Process.Pid }

// Exited returns a channel closed once the process has exited and been waited for.
func (p *Process) Exited() <-chan struct{} { return p.exited }

// HasExited reports whether the process has exited.
func (p *Process) HasExited() bool {
	select {
	case <-p.exited:
		return true
	default:
		return false
	}
}

// Stop sends SIGTERM to the process group and, if the process has not exited within grace,
// SIGKILL; it returns once the process has exited.
func (p *Process) Stop(grace time.Duration) {
	_ = syscall.Kill(-p.PID(), syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(grace):
		p.Kill()
	}
}

// Kill sends SIGKILL to the process group (no shutdown, no draining) and returns once the
// process has exited.
func (p *Process) Kill() {
	_ = syscall.Kill(-p.PID(), syscall.SIGKILL)
	<-p.exited
}

// Get is a WaitReady probe: a GET of url.
func Get(url string) func() (*http.Response, error) {
	return func() (*http.Response, error) { return http.Get(url) }
}

// WaitReady repeats probe until it answers 200, and fails when the process exits first (at
// once, rather than after the whole timeout), when timeout passes or when ctx ends.
func (p *Process) WaitReady(ctx context.Context, timeout time.Duration, probe func() (*http.Response, error)) error {
	deadline := time.Now().Add(timeout)
	for {
		resp, err := probe()
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("status %d", resp.StatusCode)
		}
		if p.HasExited() {
			return errors.New("exited during start-up")
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not ready after %s: %w", timeout, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}
