package web

import (
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/ztbank/ztbank/tools/console/audit"
)

// Event is one decision as the page shows it: the audit line's fields, the caller named by
// its workload, and the trace link when Jaeger runs.
type Event struct {
	Seq        uint64 `json:"seq"`
	Time       string `json:"time"`
	DecisionID string `json:"decision_id"`
	Service    string `json:"service"`
	Tenant     string `json:"tenant"`
	Caller     string `json:"caller"`    // workload name, or the SPIFFE ID if the topology has none
	CallerID   string `json:"caller_id"` // SPIFFE ID
	User       string `json:"user"`      // user@tenant, "" for workload-only calls
	UserID     string `json:"user_id"`
	Action     string `json:"action"`
	Method     string `json:"method"`
	Route      string `json:"route"`
	Allow      bool   `json:"allow"`
	Reason     string `json:"reason"`
	Status     int    `json:"status,omitempty"`
	TraceID    string `json:"trace_id,omitempty"`
	TraceURL   string `json:"trace_url,omitempty"`
	// Seen is when the console read the line, so the page can show how far behind it is.
	Seen string `json:"seen"`
}

func (c *Console) event(d audit.Decision) Event {
	e := Event{Time: d.Time.Format(time.RFC3339Nano), DecisionID: d.DecisionID, Service: d.Service, Tenant: d.Tenant,
		CallerID: d.Caller, UserID: d.User, Action: d.Action, Method: d.Method, Route: d.Route, Allow: d.Allow,
		Reason: d.Reason, Status: d.Status, TraceID: d.TraceID, Seen: time.Now().UTC().Format(time.RFC3339Nano)}
	e.Caller = d.Caller
	if id, err := spiffeid.FromString(d.Caller); err == nil {
		if w, ok := c.cfg.Topology.WorkloadByID(id); ok {
			e.Caller = w.Name
		}
	}
	if id, err := spiffeid.FromString(d.User); err == nil {
		// Users are spiffe://<tenant>/user/<id>.
		e.User = strings.TrimPrefix(id.Path(), "/user/") + "@" + id.TrustDomain().Name()
	}
	if c.cfg.JaegerURL != "" && d.TraceID != "" {
		e.TraceURL = strings.TrimSuffix(c.cfg.JaegerURL, "/") + "/trace/" + url.PathEscape(d.TraceID)
	}
	return e
}

// hub keeps the most recent events and hands every new one to each open stream.
type hub struct {
	mu     sync.Mutex
	ring   []Event
	size   int
	seq    uint64
	subs   map[chan Event]struct{}
	closed bool
}

func newHub(size int) *hub { return &hub{size: size, subs: map[chan Event]struct{}{}} }

func (h *hub) publish(e Event) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.seq++
	e.Seq = h.seq
	h.ring = append(h.ring, e)
	if len(h.ring) > h.size {
		h.ring = h.ring[len(h.ring)-h.size:]
	}
	for ch := range h.subs {
		select {
		case ch <- e:
		default:
			// A page that cannot keep up is cut off; its browser reconnects with
			// Last-Event-ID and catches up from the ring.
			delete(h.subs, ch)
			close(ch)
		}
	}
}

// subscribe returns the events after seq still in the ring and a channel for later ones.
func (h *hub) subscribe(after uint64) ([]Event, chan Event) {
	h.mu.Lock()
	defer h.mu.Unlock()
	var backlog []Event
	for _, e := range h.ring {
		if e.Seq > after {
			backlog = append(backlog, e)
		}
	}
	ch := make(chan Event, 256)
	h.subs[ch] = struct{}{}
	return backlog, ch
}

func (h *hub) unsubscribe(ch chan Event) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.subs[ch]; ok {
		delete(h.subs, ch)
		close(ch)
	}
}

// serveSSE streams events as server-sent events: the backlog first, then each new decision
// as it is read. Each event's id is its sequence number, so a reconnecting browser resumes
// where it left off.
func (h *hub) serveSSE(w http.ResponseWriter, r *http.Request) {
	rc := http.NewResponseController(w)
	var after uint64
	if v := r.Header.Get("Last-Event-ID"); v != "" {
		after, _ = strconv.ParseUint(v, 10, 64)
	}
	backlog, ch := h.subscribe(after)
	defer h.unsubscribe(ch)
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	send := func(e Event) error {
		b, err := jsonLine(e)
		if err != nil {
			return err
		}
		if _, err := fmt.Fprintf(w, "id: %d\nevent: decision\ndata: %s\n\n", e.Seq, b); err != nil {
			return err
		}
		return nil
	}
	for _, e := range backlog {
		if send(e) != nil {
			return
		}
	}
	fmt.Fprint(w, ": live\n\n")
	if rc.Flush() != nil {
		return
	}
	keepalive := time.NewTicker(15 * time.Second)
	defer keepalive.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case e, ok := <-ch:
			if !ok {
				return
			}
			if send(e) != nil || rc.Flush() != nil {
				return
			}
		case <-keepalive.C:
			if _, err := fmt.Fprint(w, ": keepalive\n\n"); err != nil || rc.Flush() != nil {
				return
			}
		}
	}
}
