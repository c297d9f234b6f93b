package apiserver

import (
	"os/exec"
	"syscall"
)

// dieWithParent makes the kernel kill etcd and kube-apiserver when the test process dies
// (a go test timeout panics and exits without running cleanups), so no server outlives it.
func dieWithParent(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
