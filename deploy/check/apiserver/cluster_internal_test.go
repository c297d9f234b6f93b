package apiserver

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestStartRetriesATakenPort holds etcd's client port on the first attempt, as another
// process on the machine might between freePorts and etcd's bind, and expects Start to
// recover on a second attempt with fresh ports.
func TestStartRetriesATakenPort(t *testing.T) {
	bins := os.Getenv("KUBE_BIN_DIR")
	if bins == "" {
		t.Skip("KUBE_BIN_DIR not set: runs under `make kube-test`, which builds kube-apiserver and etcd first")
	}
	held, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	calls := 0
	pickPorts = func(n int) ([]int, error) {
		calls++
		ports, err := freePorts(n)
		if err == nil && calls == 1 {
			ports[0] = held.Addr().(*net.TCPAddr).Port
		}
		return ports, err
	}
	defer func() { pickPorts = freePorts }()

	dir := t.TempDir()
	c, err := Start(t.Context(), Config{BinDir: bins, Dir: dir, ReadyTimeout: 3 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Stop()
	if calls != 2 {
		t.Errorf("ports picked %d times, want 2 (one retry)", calls)
	}
	log, err := os.ReadFile(filepath.Join(dir, "attempt-0", "etcd.log"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(log), "address already in use") {
		t.Errorf("first attempt's etcd log does not show the taken port:\n%s", log)
	}
}
