package chaos

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"

	"github.com/ztbank/ztbank/devkit/demo"
)

// attempt is one HTTP exchange of the load.
type attempt struct {
	Start, End time.Time
	OK         bool
	Op         string
	Detail     string // status and body head, or the transport error, for failures
}

// loadConfig is a steady, open-loop load: ops are started at Rate per second whatever the
// answers, like independent customers, by up to Workers concurrent clients.
type loadConfig struct {
	Rate    float64
	Workers int
	// RetryBudget is how long a client keeps retrying one operation (a payment on the same
	// Idempotency-Key) before it gives up and counts the operation as failed.
	RetryBudget time.Duration
}

// loader drives the load and records every attempt.
type loader struct {
	e       *env
	cfg     loadConfig
	mu      sync.Mutex
	tries   []attempt
	opsOK   atomic.Int64
	opsLost atomic.Int64 // operations that never succeeded within the retry budget
	missed  atomic.Int64 // ticks with every worker busy: the rate was not achieved
	started time.Time
	stopped time.Time
	stop    context.CancelFunc
	done    sync.WaitGroup
}

// The load's operations: payments between the two bank-b customers (alternating, so neither
// runs dry), one of them reading a balance, and a bank-a customer reading her profile.
var (
	bob, dave = demo.AccountID("bob@bank-b", "current"), demo.AccountID("dave@bank-b", "current")
	ops       = []string{"pay", "balance", "pay", "profile"}
)

func startLoad(ctx context.Context, e *env, cfg loadConfig) *loader {
	// Stopping ends the dispatch of new operations only; operations under way finish their
	// retries (each bounded by the budget), so none is counted lost for being cut off.
	dispatch, cancel := context.WithCancel(ctx)
	l := &loader{e: e, cfg: cfg, started: time.Now(), stop: cancel}
	jobs := make(chan int)
	for range cfg.Workers {
		l.done.Go(func() {
			for i := range jobs {
				l.op(ctx, i)
			}
		})
	}
	l.done.Go(func() {
		defer close(jobs)
		tick := time.NewTicker(time.Duration(float64(time.Second) / cfg.Rate))
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-dispatch.Done():
				return
			case <-tick.C:
			}
			select {
			case jobs <- i:
			default:
				l.missed.Add(1)
			}
		}
	})
	return l
}

// finish stops the load and waits for operations in flight to end (each is bounded by the
// retry budget).
func (l *loader) finish() {
	l.stop()
	l.done.Wait()
	l.stopped = time.Now()
}

func (l *loader) record(a attempt) {
	l.mu.Lock()
	l.tries = append(l.tries, a)
	l.mu.Unlock()
}

// attempts returns the attempts that started in [from, to).
func (l *loader) attempts(from, to time.Time) []attempt {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []attempt
	for _, a := range l.tries {
		if !a.Start.Before(from) && a.Start.Before(to) {
			out = append(out, a)
		}
	}
	return out
}

func (l *loader) op(ctx context.Context, i int) {
	kind := ops[i%len(ops)]
	var (
		user, method, path, body, key string
	)
	switch kind {
	case "pay":
		from, to, payer := bob, dave, "bob@bank-b"
		if (i/len(ops))%2 == 1 {
			from, to, payer = dave, bob, "dave@bank-b"
		}
		user, method, path, key = payer, http.MethodPost, "/bank-b/v1/payments", uuid.NewString()
		body = fmt.Sprintf(`{"from_account":%q,"to_account":%q,"amount":{"amount":100,"currency":"EUR"},"reference":"chaos %d"}`, from, to, i)
	case "balance":
		user, method, path = "bob@bank-b", http.MethodGet, "/bank-b/v1/accounts/"+bob.String()+"/balance"
	case "profile":
		user, method, path = "alice@bank-a", http.MethodGet, "/bank-a/v1/users/me"
	}
	deadline := time.Now().Add(l.cfg.RetryBudget)
	for try := 0; ; try++ {
		retryAfter, ok := l.try(ctx, kind, user, method, path, key, body)
		if ok {
			l.opsOK.Add(1)
			return
		}
		// A client retries the same operation (a payment on the same Idempotency-Key) until
		// its budget is spent, as a well-behaved client does: exponential backoff with
		// jitter, never sooner than the server's Retry-After. A fixed pause made every
		// operation started during an outage retry in step, and once a loaded machine
		// stretched a PostgreSQL restart to ~5 s, their retries alone spent bob's per-user
		// edge budget (429s in series run 2).
		wait := max(retryAfter, backoff(try))
		if ctx.Err() != nil || time.Now().Add(wait).After(deadline) {
			l.opsLost.Add(1)
			return
		}
		select {
		case <-ctx.Done():
			l.opsLost.Add(1)
			return
		case <-time.After(wait):
		}
	}
}

// try sends one attempt and records it. A payment succeeds with 201 (first answer or
// replay); a read with 200.
func (l *loader) try(ctx context.Context, kind, user, method, path, key, body string) (time.Duration, bool) {
	a := attempt{Start: time.Now(), Op: kind}
	defer func() { a.End = time.Now(); l.record(a) }()
	tok, err := l.e.tokens.get(ctx, user)
	if err != nil {
		a.Detail = err.Error()
		return 0, false
	}
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(context.WithoutCancel(ctx), method, l.e.edge+path, rd)
	if err != nil {
		a.Detail = err.Error()
		return 0, false
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if key != "" {
		req.Header.Set("Idempotency-Key", key)
	}
	resp, err := l.e.client.Do(req)
	if err != nil {
		a.Detail = err.Error()
		return 0, false
	}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	resp.Body.Close()
	want := http.StatusOK
	if kind == "pay" {
		want = http.StatusCreated
	}
	if resp.StatusCode == want {
		a.OK = true
		return 0, true
	}
	a.Detail = fmt.Sprintf("%d %s", resp.StatusCode, strings.TrimSpace(string(b)))
	secs, _ := strconv.Atoi(resp.Header.Get("Retry-After"))
	return time.Duration(secs) * time.Second, false
}

// summary counts attempts in a window.
type summary struct {
	Attempts, Failed int
	FirstFailure     time.Time
	LastFailure      time.Time
	Examples         []string
}

func summarise(as []attempt) summary {
	var s summary
	seen := map[string]bool{}
	for _, a := range as {
		s.Attempts++
		if a.OK {
			continue
		}
		s.Failed++
		if s.FirstFailure.IsZero() || a.Start.Before(s.FirstFailure) {
			s.FirstFailure = a.Start
		}
		if a.End.After(s.LastFailure) {
			s.LastFailure = a.End
		}
		d := a.Op + ": " + a.Detail
		if len(d) > 160 {
			d = d[:160]
		}
		if !seen[d] && len(s.Examples) < 4 {
			seen[d] = true
			s.Examples = append(s.Examples, d)
		}
	}
	return s
}

// backoff is the pause before retry number try+1: 250 ms doubling per try up to 4 s, with
// full jitter on the upper half so clients that failed together do not retry together.
func backoff(try int) time.Duration {
	d := 250 * time.Millisecond << min(try, 4)
	return d/2 + rand.N(d/2+1)
}
