package authz

import (
	"io"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// The buffered audit writer of ADR 1002. Writing each line with its own system call put a
// write(2) on every request's path, at every hop; lines are instead appended to a buffer in
// memory and written in batches by one goroutine. What it guarantees:
//
//   - Nothing is dropped. When the buffer holds auditQueueLimit bytes, a request that has
//     a line to add waits until the writer has taken the buffer (ztbank_authz_audit_waits_total
//     counts the waits): a service whose audit output stalls stops answering, as it did
//     when each request wrote its own line, rather than serving unaudited.
//   - A normal shutdown loses nothing: Engine.Close writes what is buffered, and lines that
//     arrive after Close are written at once, synchronously.
//   - A crash (SIGKILL, the OOM killer, a fatal runtime error) can lose the lines of the last
//     auditFlushInterval, which the audit log therefore no longer promises to hold; before,
//     it could lose the line of a request between its handler returning and its write.

const (
	// auditFlushInterval bounds how long a line waits in memory.
	auditFlushInterval = 20 * time.Millisecond
	// auditFlushAt wakes the writer early once this much is buffered, so a burst is
	// written in a few large writes rather than waiting for the tick.
	auditFlushAt = 64 << 10
	// auditQueueLimit bounds the memory held by lines not yet written; a request that
	// would grow the buffer past it waits.
	auditQueueLimit = 1 << 20
)

// auditSink buffers whole lines and writes them to w from one goroutine.
type auditSink struct {
	w       io.Writer
	flushAt int
	limit   int
	waits   prometheus.Counter

	mu      sync.Mutex
	drained sync.Cond // broadcast when the writer takes the buffer, and on close
	pending []byte    // lines not yet taken by the writer
	spare   []byte    // the buffer the writer last wrote, reused
	closed  bool

	writeMu sync.Mutex // orders writes to w: the writer goroutine's and those after close
	wake    chan struct{}
	stop    chan struct{}
	done    chan struct{}
}

func newAuditSink(w io.Writer, interval time.Duration, flushAt, limit int, waits prometheus.Counter) *auditSink {
	s := &auditSink{w: w, flushAt: flushAt, limit: limit, waits: waits,
		wake: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	s.drained.L = &s.mu
	go s.run(interval)
	return s
}

// Write queues p, which must be whole lines. It never drops: when the queue is full it
// waits for room, and after Close it writes p itself.
func (s *auditSink) Write(p []byte) (int, error) {
	s.mu.Lock()
	waited := false
	for !s.closed && len(s.pending) > 0 && len(s.pending)+len(p) > s.limit {
		if !waited {
			waited = true
			if s.waits != nil {
				s.waits.Inc()
			}
		}
		s.kick()
		s.drained.Wait()
	}
	if s.closed {
		s.mu.Unlock()
		s.writeMu.Lock()
		defer s.writeMu.Unlock()
		return s.w.Write(p)
	}
	s.pending = append(s.pending, p...)
	if len(s.pending) >= s.flushAt {
		s.kick()
	}
	s.mu.Unlock()
	return len(p), nil
}

// kick wakes the writer without waiting for it.
func (s *auditSink) kick() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

func (s *auditSink) run(interval time.Duration) {
	defer close(s.done)
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-tick.C:
		case <-s.wake:
		case <-s.stop:
			s.flush()
			return
		}
		s.flush()
	}
}

// flush writes what is buffered. Only the writer goroutine calls it.
func (s *auditSink) flush() {
	s.mu.Lock()
	b := s.pending
	s.pending, s.spare = s.spare[:0], nil
	s.drained.Broadcast()
	s.mu.Unlock()
	if len(b) == 0 {
		s.mu.Lock()
		s.spare = b
		s.mu.Unlock()
		return
	}
	s.writeMu.Lock()
	_, _ = s.w.Write(b) // as before buffering, an audit writer failure does not fail requests
	s.writeMu.Unlock()
	s.mu.Lock()
	if cap(b) <= 2*s.limit {
		s.spare = b[:0]
	}
	s.mu.Unlock()
}

// Close writes every buffered line and stops the writer; later lines are written
// synchronously. It is safe to call more than once.
func (s *auditSink) Close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		<-s.done
		return
	}
	s.closed = true
	s.drained.Broadcast()
	s.mu.Unlock()
	close(s.stop)
	<-s.done
}
