package audit

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestFollow writes decisions into two files the way the services do (appends, a line
// written in two pieces, noise between decisions), then truncates one and replaces the
// other as a restarted stack would, and checks every decision arrives exactly once.
func TestFollow(t *testing.T) {
	lines := realLines(t)
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a.log"), filepath.Join(dir, "b.log")
	var mu sync.Mutex
	var got []string
	var bad []string
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		Follow(ctx, []string{a, b}, 10*time.Millisecond, func(d Decision) {
			mu.Lock()
			got = append(got, d.DecisionID)
			mu.Unlock()
		}, func(path string, err error) {
			mu.Lock()
			bad = append(bad, err.Error())
			mu.Unlock()
		})
	}()
	defer func() { cancel(); <-done }()
	waitFor := func(n int) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for {
			mu.Lock()
			c := len(got)
			mu.Unlock()
			if c >= n {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("got %d decisions, want %d", c, n)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	id := func(l string) string {
		d, err := Parse([]byte(l))
		if err != nil {
			t.Fatal(err)
		}
		return d.DecisionID
	}
	appendTo := func(path, s string) {
		f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if _, err := f.WriteString(s); err != nil {
			t.Fatal(err)
		}
	}

	appendTo(a, `{"level":"INFO","msg":"starting"}`+"\n"+lines[0]+"\n")
	waitFor(1)
	half := len(lines[1]) / 2
	appendTo(b, lines[1][:half])
	appendTo(b, lines[1][half:]+"\nnot json\n")
	waitFor(2)
	if err := os.Truncate(a, 0); err != nil {
		t.Fatal(err)
	}
	appendTo(a, lines[2]+"\n")
	waitFor(3)
	if err := os.Remove(b); err != nil {
		t.Fatal(err)
	}
	appendTo(b, lines[0]+"\n")
	waitFor(4)

	mu.Lock()
	defer mu.Unlock()
	want := []string{id(lines[0]), id(lines[1]), id(lines[2]), id(lines[0])}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("decisions = %v, want %v", got, want)
	}
	if len(bad) > 0 {
		t.Errorf("reported as malformed: %v", bad)
	}
}
