package chaos

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/ztbank/ztbank/services/payment/config"
	"github.com/ztbank/ztbank/services/payment/store"
	"github.com/ztbank/ztbank/tools/devstack/stack"
)

// Chaos parameters, each derived from what it waits for.
const (
	// chaosSVIDTTL is short so the agent outage outlives every SVID within a minute.
	chaosSVIDTTL = time.Minute
	// chaosRecoverEvery is the payment service's recovery period in the chaos stack: short,
	// so a pending payment is decided soon after its lease allows.
	chaosRecoverEvery = 2 * time.Second
	// chaosLease is the payment service's key lease (PAYMENT_LEASE) in the chaos stack:
	// shorter than the default 30 s so a payment whose process died is resumed or
	// recovered within seconds, still far longer than a ledger call takes here.
	chaosLease = 10 * time.Second
	// chaosRate is the steady load. Low enough that the shared 2-core machine keeps up
	// with the stack restarting parts of itself, high enough that every fault lands on
	// requests in flight.
	chaosRate = 10.0
	// recoveryTimeout bounds how long a stack may take to serve again after a fault
	// healed: a supervised restart's back-off cap, a SPIRE agent's re-attestation and every
	// service's readiness (stack.Start's own 90 s readiness budget), on a busy machine.
	recoveryTimeout = 3 * time.Minute
	// steadyRun is how many successes in a row after a fault count as recovered.
	steadyRun = 20
)

// recoveryTimeoutSlack is what a fault may add to its window before clients see service
// again (a supervised restart and its readiness), for judging lost operations.
const recoveryTimeoutSlack = 2 * requestTimeout

// chaosBudget is how long a client keeps retrying one operation: a payment whose first
// attempt died with the payment service holds its key for a lease, and the retry after it
// needs up to two request timeouts.
const chaosBudget = chaosLease + 2*requestTimeout

// chaosSettleTimeout is how long a payment may stay pending in the chaos stack: a lease,
// the recovery's wait of one more lease, two recovery periods and a request timeout.
const chaosSettleTimeout = 2*chaosLease + 2*chaosRecoverEvery + requestTimeout

// row is one fault's line in the report.
type row struct {
	Fault      string
	Window     time.Duration
	Attempts   int
	Failed     int
	Lost       int64
	Recovery   time.Duration
	Invariants error
	Notes      []string
}

// fault is one injection: inject puts it in place and returns once it is; heal ends it.
// check, when set, inspects the attempts made while the fault lasted.
type fault struct {
	name   string
	short  bool // part of the short run in make test
	inject func(ctx context.Context, t *testing.T, e *env) (notes []string, err error)
	heal   func(ctx context.Context, t *testing.T, e *env) (notes []string, err error)
	check  func(as []attempt) []string
	// prepare, when set, configures the stack before the load starts (not measured); before
	// runs under load once it is steady, just before inject (not in the window); after runs
	// once the stack has recovered, to check what the fault left behind.
	prepare, before, after func(ctx context.Context, t *testing.T, e *env) (notes []string, err error)
	// noFailures: clients must not notice the fault at all.
	noFailures bool
	// strict: a failure with a status check does not allow fails the run (a database
	// outage must be 503, never 500: ADR 0997).
	strict bool
}

func chaosMode(t *testing.T) string {
	m := os.Getenv("ZTBANK_CHAOS")
	if m != "full" && m != "short" {
		t.Skip("ZTBANK_CHAOS unset: the chaos suite runs from make chaos (full) and make chaos-short")
	}
	return m
}

func oidcOutage(t *testing.T) time.Duration {
	d, err := time.ParseDuration(os.Getenv("ZTBANK_CHAOS_OIDC_OUTAGE"))
	if err != nil || d <= 0 {
		return 2 * time.Minute
	}
	return d
}

// TestChaos starts one stack (supervised, short SVIDs, the payment failpoint armed for its
// first process only) and runs the crash-after-ledger-post proof and then each fault under
// steady load, checking the invariants after each.
func TestChaos(t *testing.T) {
	mode := chaosMode(t)
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Minute)
	defer cancel()
	e := startEnv(t, ctx, func(o *stack.Options) {
		o.SVIDTTL = chaosSVIDTTL
		prev := o.Configure
		o.Configure = func(s *stack.Stack) {
			if prev != nil {
				prev(s)
			}
			for _, svc := range s.Services {
				if svc.Workload.Service == "payment" {
					svc.Env = append(svc.Env, "PAYMENT_RECOVER_EVERY="+chaosRecoverEvery.String(), "PAYMENT_LEASE="+chaosLease.String(),
						"PAYMENT_FAILPOINT="+config.FailAfterLedgerPost)
				}
			}
		}
	})
	want, err := e.customerTotals(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var rows []row
	t.Run("crash after the ledger posted", func(t *testing.T) {
		rows = append(rows, crashAfterLedgerPost(ctx, t, e, want))
	})
	for _, f := range faults(t) {
		if mode == "short" && !f.short {
			continue
		}
		t.Run(f.name, func(t *testing.T) {
			r := runFault(ctx, t, e, f, want)
			rows = append(rows, r)
		})
	}
	writeSection(t, "chaos", chaosReport(mode, rows))
}

// crashAfterLedgerPost: the first payment process has PAYMENT_FAILPOINT set, so it kills
// itself (SIGKILL) after the ledger's reply and before recording the outcome. The stack's
// supervisor restarts it without the failpoint; with no client retry, the payment must end
// posted, exactly once.
func crashAfterLedgerPost(ctx context.Context, t *testing.T, e *env, want totals) row {
	r := row{Fault: "payment killed between the ledger's reply and the outcome write (failpoint)"}
	svc := e.paymentService(t)
	// The restarted process must run without the failpoint.
	svc.SetEnv(slices.DeleteFunc(slices.Clone(svc.Env), func(kv string) bool { return strings.HasPrefix(kv, "PAYMENT_FAILPOINT=") }))
	exited, pid := svc.Exited(), svc.PID()
	start := time.Now()
	key := uuid.NewString()
	body := fmt.Sprintf(`{"from_account":%q,"to_account":%q,"amount":{"amount":4242,"currency":"EUR"},"reference":"crash"}`, bob, dave)
	status, _ := e.send(ctx, "bob@bank-b", http.MethodPost, "/bank-b/v1/payments", key, body)
	if status == http.StatusCreated {
		t.Fatalf("the payment succeeded: the failpoint did not fire")
	}
	r.Attempts, r.Failed = 1, 1
	select {
	case <-exited:
	case <-time.After(requestTimeout):
		t.Fatalf("payment process %d still running after the failpoint", pid)
	}
	// At this instant the ledger has posted and the payment is pending: the crash point.
	id, st, postings := e.paymentState(ctx, t, key)
	if st != store.StatusPending || postings != 1 {
		t.Fatalf("after the crash: payment %s is %q with %d ledger postings; want pending with 1", id, st, postings)
	}
	// No client retry from here on: recovery alone must settle it.
	if err := waitFor(ctx, chaosSettleTimeout, time.Second, func() error {
		if _, st, _ := e.paymentState(ctx, t, key); st != store.StatusPosted {
			return fmt.Errorf("payment %s still %s", id, st)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	r.Recovery = time.Since(start)
	if _, _, postings := e.paymentState(ctx, t, key); postings != 1 {
		t.Errorf("payment %s has %d ledger postings, want exactly 1", id, postings)
	}
	if newPID := svc.PID(); newPID == pid || newPID == 0 {
		t.Errorf("payment process not restarted (pid %d → %d)", pid, newPID)
	} else if env, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", newPID)); err == nil && strings.Contains(string(env), "PAYMENT_FAILPOINT") {
		t.Errorf("the restarted payment process still has the failpoint")
	}
	// The client's retry now replays the settled outcome.
	if status, hdr := e.send(ctx, "bob@bank-b", http.MethodPost, "/bank-b/v1/payments", key, body); status != http.StatusCreated || hdr.Get("Idempotent-Replayed") != "true" {
		t.Errorf("retry after recovery: %d (replayed %q), want 201 replayed", status, hdr.Get("Idempotent-Replayed"))
	}
	// The payment moved 4242 between two customers: totals stay what they were.
	r.Invariants = waitFor(ctx, chaosSettleTimeout, time.Second, func() error { return e.checkInvariants(ctx, want) })
	if r.Invariants != nil {
		t.Errorf("invariants: %v", r.Invariants)
	}
	r.Notes = append(r.Notes, "settled posted by recovery with no client retry; 1 ledger posting")
	return r
}

func (e *env) paymentService(t *testing.T) *stack.Service {
	for _, svc := range e.st.Services {
		if svc.Workload.Service == "payment" {
			return svc
		}
	}
	t.Fatal("the stack runs no payment service")
	return nil
}

// paymentState reads the payment under an Idempotency-Key and how many ledger transactions
// carry its ID, from the database directly.
func (e *env) paymentState(ctx context.Context, t *testing.T, key string) (uuid.UUID, string, int) {
	t.Helper()
	var id uuid.UUID
	var status string
	var postings int
	for _, tn := range e.st.Topo.Tenants {
		c, err := e.connect(ctx, tn.Database)
		if err != nil {
			t.Fatal(err)
		}
		if ok, _ := hasTable(ctx, c, "payments.payments"); ok {
			err = c.QueryRow(ctx, `SELECT p.id, p.status, (SELECT count(*) FROM ledger.transactions t WHERE t.reference = p.id::text)
				FROM payments.payments p WHERE p.idempotency_key = $1`, key).Scan(&id, &status, &postings)
			c.Close(ctx)
			if err != nil {
				t.Fatalf("payment with key %s: %v", key, err)
			}
			return id, status, postings
		}
		c.Close(ctx)
	}
	t.Fatal("no tenant database holds payments")
	return id, status, postings
}

// send makes one request through the edge with the user's current token.
func (e *env) send(ctx context.Context, user, method, path, key, body string) (int, http.Header) {
	tok, err := e.tokens.get(ctx, user)
	if err != nil {
		return 0, nil
	}
	req, _ := http.NewRequestWithContext(ctx, method, e.edge+path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Content-Type", "application/json")
	if key != "" {
		req.Header.Set("Idempotency-Key", key)
	}
	resp, err := e.client.Do(req)
	if err != nil {
		return 0, nil
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, resp.Header
}

// runFault runs one fault under load and measures it.
func runFault(ctx context.Context, t *testing.T, e *env, f fault, want totals) row {
	r := row{Fault: f.name}
	if f.prepare != nil {
		notes, err := f.prepare(ctx, t, e)
		r.Notes = append(r.Notes, notes...)
		if err != nil {
			t.Fatalf("prepare: %v", err)
		}
	}
	l := startLoad(ctx, e, loadConfig{Rate: chaosRate, Workers: 64, RetryBudget: chaosBudget})
	defer l.finish()
	// Faults start on a stack that is serving: a run of successes first.
	if err := l.waitSteady(ctx, time.Now(), recoveryTimeout); err != nil {
		t.Fatalf("before the fault: %v", err)
	}
	if f.before != nil {
		notes, err := f.before(ctx, t, e)
		r.Notes = append(r.Notes, notes...)
		if err != nil {
			t.Fatalf("before the fault: %v", err)
		}
	}
	injected := time.Now()
	notes, err := f.inject(ctx, t, e)
	r.Notes = append(r.Notes, notes...)
	if err != nil {
		t.Fatalf("inject: %v", err)
	}
	if f.heal != nil {
		notes, err := f.heal(ctx, t, e)
		r.Notes = append(r.Notes, notes...)
		if err != nil {
			t.Fatalf("heal: %v", err)
		}
	}
	healed := time.Now()
	r.Window = healed.Sub(injected)
	if err := e.st.WaitReady(ctx, recoveryTimeout); err != nil {
		t.Fatalf("stack not ready after the fault: %v", err)
	}
	if err := l.waitSteady(ctx, healed, recoveryTimeout); err != nil {
		t.Fatalf("after the fault: %v", err)
	}
	if f.after != nil {
		notes, err := f.after(ctx, t, e)
		r.Notes = append(r.Notes, notes...)
		if err != nil {
			t.Errorf("%s: %v", f.name, err)
		}
	}
	l.finish()
	s := summarise(l.attempts(l.started, l.stopped))
	r.Attempts, r.Failed, r.Lost = s.Attempts, s.Failed, l.opsLost.Load()
	if s.Failed > 0 && s.LastFailure.After(injected) {
		r.Recovery = s.LastFailure.Sub(injected)
	}
	if f.check != nil {
		notes := f.check(l.attempts(injected, l.stopped))
		r.Notes = append(r.Notes, notes...)
		for _, n := range notes {
			if f.strict && strings.Contains(n, "unexpected") {
				t.Errorf("%s: %s", f.name, n)
			}
		}
	}
	if f.noFailures && s.Failed > 0 {
		t.Errorf("%s: %d requests failed, want none: %v", f.name, s.Failed, s.Examples)
	}
	if len(s.Examples) > 0 {
		t.Logf("%s: failures (first of each kind): %s", f.name, strings.Join(s.Examples, " | "))
	}
	r.Invariants = waitFor(ctx, chaosSettleTimeout, time.Second, func() error { return e.checkInvariants(ctx, want) })
	if r.Invariants != nil {
		t.Errorf("invariants after %s: %v", f.name, r.Invariants)
	}
	// An outage longer than a client's retry budget loses operations by definition; a
	// shorter one must not.
	if r.Lost > 0 && r.Window+recoveryTimeoutSlack < chaosBudget {
		t.Errorf("%s: %d operations never succeeded within the client's %s retry budget", f.name, r.Lost, chaosBudget)
	}
	t.Logf("%s: %d attempts, %d failed, recovered %s after injection, window %s", f.name, r.Attempts, r.Failed,
		r.Recovery.Round(100*time.Millisecond), r.Window.Round(100*time.Millisecond))
	return r
}

// waitSteady waits until steadyRun attempts in a row that started after since succeeded.
func (l *loader) waitSteady(ctx context.Context, since time.Time, timeout time.Duration) error {
	return waitFor(ctx, timeout, 200*time.Millisecond, func() error {
		as := l.attempts(since, time.Now().Add(time.Hour))
		slices.SortFunc(as, func(a, b attempt) int { return a.End.Compare(b.End) })
		run := 0
		for _, a := range as {
			if a.OK {
				run++
			} else {
				run = 0
			}
		}
		if run < steadyRun {
			last := "none"
			if n := len(as); n > 0 {
				last = as[n-1].Detail
			}
			return fmt.Errorf("%d successes in a row since %s, want %d (last: %s)", run, since.Format(time.TimeOnly), steadyRun, last)
		}
		return nil
	})
}

// onlyStatuses reports failures whose status is not among allowed (transport errors are
// listed separately); a 500 during a database outage is the bug ADR 0997 fixed.
// retrySpent is the edge's per-user 429. During an outage every operation started keeps
// retrying (with backoff, up to its budget), so the longer the outage the more retries per
// second a user sends; on a loaded machine a PostgreSQL restart lasted ~5 s and bob's retries
// alone passed his 20/s budget. That 429 is the edge limiting the client's retries, as it
// should, not the fault surfacing as the wrong status; the invariants and "no operation
// lost" still hold the client to its budget.
const retrySpent = "429"

// keyHeld is the payment service's 409 "in progress; retry later". A payment that had
// claimed its Idempotency-Key when PostgreSQL went away can neither record its outcome nor
// release the key, so its client's retries meet the key held until the lease ends and
// recovery settles it (series run 3: 7× 409 when a loaded machine put a payment in flight
// at the restart). That is the key doing its job; the invariants check that the payment was
// posted at most once and settled.
const keyHeld = "409"

func onlyStatuses(allowed ...string) func([]attempt) []string {
	return func(as []attempt) []string {
		seen := map[string]int{}
		for _, a := range as {
			if a.OK {
				continue
			}
			// A status is three digits; a transport error's detail starts with the method
			// ("Get …"), which is three characters too.
			code, _, _ := strings.Cut(a.Detail, " ")
			if n, err := strconv.Atoi(code); err != nil || n < 100 || n > 599 {
				code = "transport error"
			}
			seen[code]++
		}
		var out []string
		for code, n := range seen {
			mark := ""
			if code != "transport error" && !slices.Contains(allowed, code) {
				mark = " (unexpected)"
			}
			out = append(out, fmt.Sprintf("%d× %s%s", n, code, mark))
		}
		slices.Sort(out)
		return out
	}
}

func faults(t *testing.T) []fault {
	kill := func(name string) func(ctx context.Context, t *testing.T, e *env) ([]string, error) {
		return func(ctx context.Context, t *testing.T, e *env) ([]string, error) {
			var notes []string
			for _, svc := range e.st.Services {
				if svc.Workload.Service != name {
					continue
				}
				before := svc.Restarts()
				if err := svc.Kill(); err != nil {
					return nil, err
				}
				if err := waitFor(ctx, recoveryTimeout, 100*time.Millisecond, func() error {
					if svc.Restarts() == before {
						return errors.New("not restarted yet")
					}
					return nil
				}); err != nil {
					return nil, fmt.Errorf("%s: %w", svc.Workload.Name, err)
				}
				notes = append(notes, svc.Workload.Name+" restarted by the supervisor")
			}
			return notes, nil
		}
	}
	return []fault{
		{name: "kill -9 payment", short: true, inject: kill("payment"), check: onlyStatuses("409", "502", "503")},
		{name: "kill -9 ledger", inject: kill("ledger"), check: onlyStatuses("502", "503")},
		{name: "PostgreSQL restart", short: true, strict: true,
			inject: func(ctx context.Context, t *testing.T, e *env) ([]string, error) {
				return nil, e.st.RestartPostgres(ctx)
			}, check: onlyStatuses("503", retrySpent, keyHeld)},
		{name: "SPIRE server restart",
			inject: func(ctx context.Context, t *testing.T, e *env) ([]string, error) {
				return nil, e.st.Spire.RestartServer(ctx)
			}},
		{name: "SPIRE agent stopped past SVID expiry", inject: agentOutage, heal: func(ctx context.Context, t *testing.T, e *env) ([]string, error) {
			return nil, e.st.Spire.StartAgent(ctx)
		}, check: onlyStatuses("502", "503")},
		{name: "every database password expired while pools idle", inject: func(ctx context.Context, t *testing.T, e *env) ([]string, error) {
			return nil, e.st.ExpirePasswords(ctx)
		}, heal: func(ctx context.Context, t *testing.T, e *env) ([]string, error) {
			// The rotation job comes back once a client has seen the outage; until then every
			// new connection presents an expired password.
			name := anyDBService(e)
			err := waitFor(ctx, recoveryTimeout, 200*time.Millisecond, func() error {
				if e.st.Services[name].Ready(ctx) == nil {
					return errors.New("still ready")
				}
				return nil
			})
			note := name + " unready (readiness ping refused) until the rotation ran"
			if err != nil {
				note = name + " stayed ready with an expired password: " + err.Error()
			}
			return []string{note}, e.st.RotateNow(ctx)
		}, check: onlyStatuses("503", retrySpent), strict: true},
		// ADR 0995: the local stack's edge keeps its keys in memory; a token minted before
		// the kill is replayed after it.
		edgeRestart(kill("edge"), false),
		{name: fmt.Sprintf("OIDC provider down for %s", oidcOutage(t)), short: true, noFailures: true,
			inject: func(ctx context.Context, t *testing.T, e *env) ([]string, error) {
				return e.oidcDown(ctx, oidcOutage(t))
			},
			heal: func(ctx context.Context, t *testing.T, e *env) ([]string, error) {
				return nil, e.st.SetOIDCDown(false)
			}},
		// Last: it leaves the edge on a key store (ADR 0985) for the rest of the run.
		edgeRestart(kill("edge"), true),
	}
}

func anyDBService(e *env) string {
	for name, svc := range e.st.Services {
		if svc.Workload.DBRole != "" {
			return name
		}
	}
	return ""
}

// agentOutage stops the SPIRE agent and waits until every service's SVID has expired, then
// checks that the services fail closed: not ready, refusing plaintext and refusing a TLS
// client without a certificate, rather than serving without mutual authentication.
func agentOutage(ctx context.Context, t *testing.T, e *env) ([]string, error) {
	e.st.Spire.StopAgent()
	latest := time.Now()
	for _, svc := range e.st.Services {
		_ = svc.Ready(ctx) // refreshes the expiry gauge
		left := metricSum(ctx, svc.Health, "ztbank_svid_expiry_seconds")
		if exp := time.Now().Add(time.Duration(left * float64(time.Second))); exp.After(latest) {
			latest = exp
		}
	}
	// Every SVID ends at most one TTL after the agent stopped; wait past the latest.
	if time.Until(latest) > chaosSVIDTTL+time.Second {
		return nil, fmt.Errorf("an SVID outlives its TTL: expires %s", latest)
	}
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-time.After(time.Until(latest) + time.Second):
	}
	var notes []string
	for name, svc := range e.st.Services {
		if err := svc.Ready(ctx); err == nil {
			return nil, fmt.Errorf("%s reports ready with an expired SVID", name)
		}
		// Plaintext HTTP to the mTLS port is refused.
		if resp, err := http.Get("http://" + svc.Listen + "/internal/whoami"); err == nil {
			b, _ := io.ReadAll(io.LimitReader(resp.Body, 200))
			resp.Body.Close()
			if resp.StatusCode < 400 {
				return nil, fmt.Errorf("%s answered plaintext with %d: %s", name, resp.StatusCode, b)
			}
		}
		// A TLS client without a certificate is refused at the handshake (or its request).
		c := &http.Client{Timeout: requestTimeout, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
		if resp, err := c.Get("https://" + svc.Listen + "/internal/whoami"); err == nil {
			resp.Body.Close()
			if resp.StatusCode < 400 {
				return nil, fmt.Errorf("%s served a client without a certificate: %d", name, resp.StatusCode)
			}
		}
	}
	probed, err := expiredProbes(ctx, e)
	if err != nil {
		return nil, err
	}
	notes = append(notes, fmt.Sprintf("outage %s; every SVID expired; all services unready, refused plaintext and certificate-less TLS; %s",
		time.Since(latest.Add(-chaosSVIDTTL)).Round(time.Second), probed))
	return notes, nil
}

// expiredProbes sends reads of both tenants through the edge while every SVID has expired.
// The edge→gateway and service→service connections opened before expiry are still in the
// pools, so each read would succeed if a kept-alive connection outlived its certificates;
// ADR 0989 says each must fail closed instead: 502 or 503, never an answer. The probes
// log in as the staff users, whom the load does not use, so the edge's per-user rate limit
// (spent by the load's retries) does not answer for the services; a 429 is waited out.
func expiredProbes(ctx context.Context, e *env) (string, error) {
	probes := []struct{ user, path string }{
		{"carol@bank-a", "/bank-a/v1/users/me"},
		{"erin@bank-b", "/bank-b/v1/accounts/" + bob.String() + "/balance"},
	}
	const rounds = 5
	statuses := map[int]int{}
	for range rounds {
		for _, p := range probes {
			tok, err := e.tokens.get(ctx, p.user)
			if err != nil {
				return "", fmt.Errorf("token for %s: %w", p.user, err)
			}
			var (
				resp *http.Response
				b    []byte
			)
			for try := 0; ; try++ {
				req, err := http.NewRequestWithContext(ctx, http.MethodGet, e.edge+p.path, nil)
				if err != nil {
					return "", err
				}
				req.Header.Set("Authorization", "Bearer "+tok)
				if resp, err = e.client.Do(req); err != nil {
					return "", fmt.Errorf("GET %s with expired SVIDs: the edge did not answer: %w", p.path, err)
				}
				b, _ = io.ReadAll(io.LimitReader(resp.Body, 300))
				resp.Body.Close()
				if resp.StatusCode != http.StatusTooManyRequests || try == 10 {
					break
				}
				secs, _ := strconv.Atoi(resp.Header.Get("Retry-After"))
				select {
				case <-ctx.Done():
					return "", ctx.Err()
				case <-time.After(max(time.Duration(secs)*time.Second, 250*time.Millisecond)):
				}
			}
			if resp.StatusCode != http.StatusBadGateway && resp.StatusCode != http.StatusServiceUnavailable {
				return "", fmt.Errorf("GET %s with every SVID expired answered %d, want 502 or 503 (fail closed): %s", p.path, resp.StatusCode, b)
			}
			statuses[resp.StatusCode]++
		}
	}
	return fmt.Sprintf("%d reads through the edge while expired all refused (%d× 502, %d× 503)",
		rounds*len(probes), statuses[http.StatusBadGateway], statuses[http.StatusServiceUnavailable]), nil
}

func chaosReport(mode string, rows []row) string {
	var b strings.Builder
	fmt.Fprintf(&b, "## Faults under load\n\n`make chaos` (%s run, %s): steady open-loop load of %.0f operations/s through the edge "+
		"(payments between two bank-b customers, each retried by its client on the same Idempotency-Key for up to %s; balance and profile reads), "+
		"SVID TTL %s, payment recovery every %s. *Failed* counts every attempt that did not succeed (a retried payment counts once per failed attempt); "+
		"*recovery* is from injection to the end of the last failed attempt (0: nothing failed). Invariants after each fault: per-tenant "+
		"customer totals conserved, no negative customer balance, balances equal their entries, every posted payment has exactly one "+
		"ledger posting and no other payment has any, none pending.\n\n",
		mode, time.Now().UTC().Format("2006-01-02 15:04 MST"), chaosRate, chaosBudget, chaosSVIDTTL, chaosRecoverEvery)
	fmt.Fprintf(&b, "| fault | window | attempts | failed | ops lost | recovery | invariants | notes |\n|---|---|---|---|---|---|---|---|\n")
	for _, r := range rows {
		fmt.Fprintf(&b, "| %s | %s | %d | %d (%s) | %d | %s | %s | %s |\n", r.Fault, r.Window.Round(100*time.Millisecond),
			r.Attempts, r.Failed, pct(r.Failed, r.Attempts), r.Lost, r.Recovery.Round(100*time.Millisecond),
			invariantText(r.Invariants), strings.Join(r.Notes, "; "))
	}
	return b.String()
}

// oidcDown takes the OIDC provider away for window. Before, every user gets a fresh token
// (the outage is shorter than a token's life, so the load runs on tokens issued before it).
// During it, a login must fail, and a token the edge cannot check without the provider (a
// key ID it has not cached) must be refused with problem+json, not let through.
func (e *env) oidcDown(ctx context.Context, window time.Duration) ([]string, error) {
	if err := e.tokens.refreshAll(ctx); err != nil {
		return nil, err
	}
	if exp := e.tokens.earliestExpiry(); time.Until(exp) < window+tokenMargin {
		return nil, fmt.Errorf("tokens expire at %s, inside the %s outage: shorten ZTBANK_CHAOS_OIDC_OUTAGE", exp, window)
	}
	if err := e.st.SetOIDCDown(true); err != nil {
		return nil, err
	}
	end := time.Now().Add(window)
	var notes []string
	if _, err := devoidcLogin(ctx, e, "bob@bank-b"); err == nil {
		return nil, errors.New("a login succeeded while the provider was down")
	}
	notes = append(notes, "logins failed during the outage")
	status, ctype, err := e.sendWithToken(ctx, unknownKID(e.tokens.cached("bob@bank-b").AccessToken), http.MethodGet,
		"/bank-b/v1/accounts/"+bob.String()+"/balance")
	if err != nil {
		return nil, fmt.Errorf("token with an unknown key during the outage: %w", err)
	}
	if status < 400 || ctype != "application/problem+json" {
		return nil, fmt.Errorf("token with an unknown key during the outage: %d %s, want a problem+json refusal", status, ctype)
	}
	notes = append(notes, fmt.Sprintf("a token with an unknown key got %d problem+json", status))
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-time.After(time.Until(end)): // the outage's length is the fault, not a wait for a condition
	}
	return append(notes, "issued tokens kept working"), nil
}

func (e *env) sendWithToken(ctx context.Context, tok, method, path string) (int, string, error) {
	req, _ := http.NewRequestWithContext(ctx, method, e.edge+path, nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := e.client.Do(req)
	if err != nil {
		return 0, "", err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, resp.Header.Get("Content-Type"), nil
}

// unknownKID rewrites a token's header to name a key the provider never had, so the edge
// must ask the provider for it.
func unknownKID(tok string) string {
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return tok
	}
	h, err := base64.RawURLEncoding.DecodeString(parts[0])
	if err != nil {
		return tok
	}
	var hdr map[string]any
	if json.Unmarshal(h, &hdr) != nil {
		return tok
	}
	hdr["kid"] = "chaos-" + uuid.NewString()
	nh, _ := json.Marshal(hdr)
	parts[0] = base64.RawURLEncoding.EncodeToString(nh)
	return strings.Join(parts, ".")
}
