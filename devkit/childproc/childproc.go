// Package childproc starts and stops the local stack's background processes (SPIRE, the
// services, Jaeger, Prometheus) the one way they must run: each in a process group of its
// own, so a stop reaches whatever it started; killed when the process that started it dies
// (Pdeathsig), so a crashed test or a Ctrl-C leaves nothing holding ports and sockets; and
// its output appended to a log file that outlives it.
package childproc

import (
	"fmt"
	"io"
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
