// Package localports hands out loopback TCP ports to the local stack and its tests, which
// start programs (SPIRE, PostgreSQL, the services) that must be told their port before they
// bind it. Picking a port by binding port 0 and closing it races with every other process
// doing the same: while test packages start stacks in parallel, the kernel hands the same
// freed ephemeral port to the next caller. Reserve avoids that race instead of retrying it:
//
//   - ports come from below the kernel's ephemeral range (ip_local_port_range), so neither a
//     port-0 listener nor an outgoing connection can be given one;
//   - each port is claimed with an exclusive flock on a file under the temporary directory,
//     held until this process exits, so two processes using Reserve never share a port;
//   - a port is handed out only if it can be bound right now (nothing else listens there).
package localports

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

// first is the lowest port handed out: above every fixed port the local stack and its
// tools use (8443, 85xx, 94xx, 9900, 4317, 16686, 5432).
const first = 20000

var (
	mu   sync.Mutex
	held = map[int]*os.File{} // reserved by this process; the lock lives as long as the file
)

// Reserve returns n distinct loopback ports reserved for this process.
func Reserve(n int) ([]int, error) {
	lo, hi := portRange()
	dir := filepath.Join(os.TempDir(), "ztbank-ports-"+strconv.Itoa(os.Getuid()))
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("localports: %w", err)
	}
	mu.Lock()
	defer mu.Unlock()
	size := hi - lo + 1
	start := rand.IntN(size)
	var ports []int
	for i := 0; i < size && len(ports) < n; i++ {
		port := lo + (start+i)%size
		if held[port] != nil {
			continue
		}
		f, err := claim(dir, port)
		if err != nil {
			continue
		}
		if !Bindable(port) {
			f.Close() // closing releases the lock
			continue
		}
		held[port] = f
		ports = append(ports, port)
	}
	if len(ports) < n {
		for _, p := range ports {
			held[p].Close()
			delete(held, p)
		}
		return nil, fmt.Errorf("localports: only %d of %d ports free in %d-%d", len(ports), n, lo, hi)
	}
	return ports, nil
}

// claim takes the exclusive lock for port, or fails at once if another process holds it.
func claim(dir string, port int) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(dir, strconv.Itoa(port)+".lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// Bindable reports whether nothing listens on loopback port right now; localpg asks it
// before reusing the port a cluster had last time.
func Bindable(port int) bool {
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		return false
	}
	l.Close()
	return true
}

// portRange is [first, start of the ephemeral range), or the ports above the ephemeral
// range when the one below is too small.
func portRange() (lo, hi int) {
	ephLo, ephHi := 32768, 60999
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if a, err1 := strconv.Atoi(f[0]); err1 == nil {
				if b, err2 := strconv.Atoi(f[1]); err2 == nil {
					ephLo, ephHi = a, b
				}
			}
		}
	}
	if ephLo-first >= 1000 {
		return first, ephLo - 1
	}
	if 65535-ephHi >= 1000 {
		return ephHi + 1, 65535
	}
	return first, first + 9999 // an unusual kernel setting; the locks and the bind check still apply
}
