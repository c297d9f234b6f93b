package localports

import (
	"net"
	"strconv"
	"testing"
)

// TestReserve: distinct ports, outside the ephemeral range, bindable by the caller (the
// reservation holds a lock file, not the port itself).
func TestReserve(t *testing.T) {
	lo, hi := portRange()
	ports, err := Reserve(20)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[int]bool{}
	for _, p := range ports {
		if seen[p] || p < lo || p > hi {
			t.Errorf("port %d: duplicate or outside %d-%d", p, lo, hi)
		}
		seen[p] = true
		l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
		if err != nil {
			t.Errorf("reserved port %d cannot be bound: %v", p, err)
			continue
		}
		l.Close()
	}
	more, err := Reserve(20)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range more {
		if seen[p] {
			t.Errorf("port %d handed out twice in one process", p)
		}
	}
}

// TestClaimIsExclusive: a port's lock cannot be taken twice (flock locks belong to the open
// file, so this holds between processes as well as within one), and closing releases it.
func TestClaimIsExclusive(t *testing.T) {
	dir := t.TempDir()
	f, err := claim(dir, 4242)
	if err != nil {
		t.Fatal(err)
	}
	if g, err := claim(dir, 4242); err == nil {
		g.Close()
		t.Fatal("claimed a port another holder has")
	}
	f.Close()
	g, err := claim(dir, 4242)
	if err != nil {
		t.Fatalf("claim after release: %v", err)
	}
	g.Close()
}

// TestBusyPortIsNotBindable: the bind check refuses a port something listens on.
func TestBusyPortIsNotBindable(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if Bindable(l.Addr().(*net.TCPAddr).Port) {
		t.Error("Bindable() = true for a port with a listener")
	}
}
