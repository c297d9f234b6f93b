package syncbuf

import (
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestConcurrentWrites: lines written from many goroutines at once all arrive whole (run
// with -race, which also proves the reads and writes are synchronised).
func TestConcurrentWrites(t *testing.T) {
	var b Buffer
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 100 {
				b.Write([]byte("line\n"))
				_ = b.String()
			}
		})
	}
	wg.Wait()
	if diff := cmp.Diff(800, strings.Count(b.String(), "line\n")); diff != "" {
		t.Errorf("lines mismatch (-want +got):\n%s", diff)
	}
	b.Reset()
	if diff := cmp.Diff("", b.String()); diff != "" {
		t.Errorf("after Reset (-want +got):\n%s", diff)
	}
}
