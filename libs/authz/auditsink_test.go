package authz

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/ztbank/ztbank/devkit/syncbuf"
)

// TestBufferedAuditLosesNothingOnClose: with the buffered writer services use, every request
// of a concurrent burst has its line once Close returns, each line whole, and a request
// audited after Close is written at once.
func TestBufferedAuditLosesNothingOnClose(t *testing.T) {
	out := &lockedBuffer{}
	e := newTestEngine(t, "bank-a/account", WithBufferedAuditWriter(out))
	h := hopRouter(t, e)
	const workers, each = 4, 100
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for range each {
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, hopRequest(t))
				if rec.Code != http.StatusOK {
					t.Errorf("status %d", rec.Code)
				}
			}
		})
	}
	wg.Wait()
	e.Close()
	lines := out.lines(t) // fails on any line that is not whole JSON
	ids := map[string]bool{}
	for _, l := range lines {
		ids[l["decision_id"].(string)] = true
	}
	if len(lines) != workers*each || len(ids) != workers*each {
		t.Fatalf("after Close: %d lines with %d decision IDs, want %d of each", len(lines), len(ids), workers*each)
	}

	e.Close() // a second Close is harmless
	h.ServeHTTP(httptest.NewRecorder(), hopRequest(t))
	if got := len(out.lines(t)); got != workers*each+1 {
		t.Errorf("a request after Close: %d lines, want %d (written at once)", got, workers*each+1)
	}
}

// TestBufferedAuditIsWrittenWithoutClose: a line does not wait for Close or for the buffer
// to fill; the writer's tick writes it.
func TestBufferedAuditIsWrittenWithoutClose(t *testing.T) {
	out := &lockedBuffer{}
	e := newTestEngine(t, "bank-a/account", WithBufferedAuditWriter(out))
	t.Cleanup(e.Close)
	hopRouter(t, e).ServeHTTP(httptest.NewRecorder(), hopRequest(t))
	deadline := time.Now().Add(5 * time.Second)
	for out.String() == "" {
		if time.Now().After(deadline) {
			t.Fatalf("no audit line written %v after the request (flush interval %v)", 5*time.Second, auditFlushInterval)
		}
		time.Sleep(time.Millisecond)
	}
}

// gatedWriter blocks every Write until the test opens the gate, like a stalled stderr.
type gatedWriter struct {
	syncbuf.Buffer
	gate    chan struct{}
	entered chan struct{}
}

func (g *gatedWriter) Write(p []byte) (int, error) {
	select {
	case g.entered <- struct{}{}:
	default:
	}
	<-g.gate
	return g.Buffer.Write(p)
}

// TestFullAuditQueueBlocksAndDropsNothing: while the output is stalled, lines queue up to
// the limit; the next request's line then waits (it is neither dropped nor written past the
// limit) and counts a wait; when the output resumes every line is there, in order.
func TestFullAuditQueueBlocksAndDropsNothing(t *testing.T) {
	out := &gatedWriter{gate: make(chan struct{}), entered: make(chan struct{}, 1)}
	waits := prometheus.NewCounter(prometheus.CounterOpts{Name: "waits"})
	const line, limit = 10, 50 // five lines fit
	s := newAuditSink(out, time.Hour, 1<<20, limit, waits)
	write := func(i int) {
		if _, err := fmt.Fprintf(s, "line %03d\n", i); err != nil {
			t.Errorf("write %d: %v", i, err)
		}
	}
	write(0)
	s.kick()
	<-out.entered // the writer took line 0 and is stuck writing it
	for i := 1; i <= limit/line; i++ {
		write(i) // fill the queue: these return at once
	}
	blocked := make(chan struct{})
	go func() {
		write(limit/line + 1)
		close(blocked)
	}()
	select {
	case <-blocked:
		t.Fatal("a write past the full queue returned while the output was stalled")
	case <-time.After(200 * time.Millisecond):
	}
	if got := testutil.ToFloat64(waits); got != 1 {
		t.Errorf("waits = %v, want 1", got)
	}

	close(out.gate) // the output resumes
	select {
	case <-blocked:
	case <-time.After(10 * time.Second):
		t.Fatal("the waiting write did not return once the output resumed")
	}
	s.Close()
	var want []string
	for i := 0; i <= limit/line+1; i++ {
		want = append(want, fmt.Sprintf("line %03d", i))
	}
	got := strings.Split(strings.TrimSpace(out.String()), "\n")
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("lines after the stall (-want +got):\n%s", diff)
	}
}
