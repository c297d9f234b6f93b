//go:build !linux

package apiserver

import "os/exec"

// dieWithParent has no portable equivalent off Linux; Cluster.Stop still ends the processes
// on every normal exit.
func dieWithParent(*exec.Cmd) {}
