package stack

import (
	"fmt"
	"net"
	"time"

	"github.com/ztbank/ztbank/devkit/localspire"
)

// FreePorts returns n distinct loopback ports that were free a moment ago.
func FreePorts(n int) ([]int, error) { return localspire.FreePorts(n) }

// PortFree reports whether addr can be bound right now.
func PortFree(addr string) bool {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return false
	}
	l.Close()
	return true
}

// WaitPortsFree waits until every address can be bound again.
func WaitPortsFree(addrs []string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for _, a := range addrs {
		for !PortFree(a) {
			if time.Now().After(deadline) {
				return fmt.Errorf("port %s still in use", a)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	return nil
}
