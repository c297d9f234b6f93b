package childproc

import (
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

func TestStartLogsAndExits(t *testing.T) {
	log := filepath.Join(t.TempDir(), "echo.log")
	p, err := Start(exec.Command("sh", "-c", "echo hello; echo oops >&2"), log, nil)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.Exited():
	case <-time.After(10 * time.Second):
		t.Fatal("sh did not exit")
	}
	if !p.HasExited() {
		t.Error("HasExited() = false after Exited was closed")
	}
	got, err := os.ReadFile(log)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != "hello\noops\n" {
		t.Errorf("log = %q, want both streams", got)
	}
	fi, err := os.Stat(log)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("log mode = %v, want 0600", fi.Mode().Perm())
	}
}

// TestStop covers both ends of Stop: a process that exits on SIGTERM, and one that ignores
// it and is killed when the grace period ends, with its child (same process group).
func TestStop(t *testing.T) {
	for _, tc := range []struct {
		name, script string
	}{
		{"exits on SIGTERM", "exec sleep 60"},
		{"ignores SIGTERM", `trap "" TERM; sleep 60 & wait`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := Start(exec.Command("sh", "-c", tc.script), filepath.Join(t.TempDir(), "log"), nil)
			if err != nil {
				t.Fatal(err)
			}
			time.Sleep(100 * time.Millisecond) // let sh set its trap
			done := make(chan struct{})
			go func() { p.Stop(500 * time.Millisecond); close(done) }()
			select {
			case <-done:
			case <-time.After(20 * time.Second):
				t.Fatal("Stop did not return")
			}
			if !p.HasExited() {
				t.Error("Stop returned before the process exited")
			}
		})
	}
}

func TestWaitReady(t *testing.T) {
	ready := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer ready.Close()
	notReady := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	defer notReady.Close()
	for _, tc := range []struct {
		name, script, url string
		wantErr           string // "" for success
	}{
		{"answers 200", "exec sleep 60", ready.URL, ""},
		{"never ready", "exec sleep 60", notReady.URL, "not ready after 300ms: status 503"},
		{"exits while starting", "exit 3", notReady.URL, "exited during start-up"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := Start(exec.Command("sh", "-c", tc.script), filepath.Join(t.TempDir(), "log"), nil)
			if err != nil {
				t.Fatal(err)
			}
			defer p.Stop(time.Second)
			if tc.name == "exits while starting" {
				<-p.Exited()
			}
			err = p.WaitReady(t.Context(), 300*time.Millisecond, Get(tc.url))
			switch {
			case tc.wantErr == "" && err != nil:
				t.Errorf("WaitReady = %v, want nil", err)
			case tc.wantErr != "" && (err == nil || err.Error() != tc.wantErr):
				t.Errorf("WaitReady = %v, want %q", err, tc.wantErr)
			}
		})
	}
}
