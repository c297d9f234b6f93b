package compose

import (
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/ztbank/ztbank/devkit/demo"
	"github.com/ztbank/ztbank/libs/topology"
)

// Load shape for the fault tests: a few concurrent clients at a modest fixed rate, which a
// loaded 2-core machine serves with room to spare, so every failure is the fault's doing.
const (
	readWorkers = 4
	readRate    = 20.0 // requests per second
	// agentOutage is how long the SPIRE agent container stays stopped (issue 11).
	agentOutage = 30 * time.Second
)

// tenantServices are the containers of the edge and every banking workload of the topology
// (docker-compose.yml is generated from it, tools/composegen): none may be restarted by a
// fault elsewhere.
var tenantServices = func() []string {
	var out []string
	for _, w := range topology.Default().Workloads {
		switch {
		case w.External:
		case w.Tenant == "":
			out = append(out, w.Service)
		default:
			out = append(out, w.Tenant+"-"+w.Service)
		}
	}
	return out
}()

// TestSpireAgentOutage stops the SPIRE agent container for 30 s under load: the workloads
// keep serving with the SVIDs they hold (and the mTLS connections they pool), so not one
// request fails, and none of them is restarted.
func TestSpireAgentOutage(t *testing.T) {
	e := need(t)
	ctx := t.Context()
	before := map[string]string{}
	for _, s := range tenantServices {
		before[s] = restartState(t, e.container(t, s))
	}
	agent := e.container(t, "spire-agent")

	l := e.startLoad(t, readWorkers, readRate, readRequests)
	l.waitOK(t, 2*int(readRate), time.Minute)

	if _, err := e.composeCmd(ctx, "stop", "-t", "5", "spire-agent"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, time.Minute, "spire-agent stopped", func() (bool, error) {
		s, err := inspect(ctx, agent, "{{.State.Running}}")
		return s == "false", err
	})
	okAtStop, _ := l.counts()
	stopped := time.Now()
	// The outage's length is the fault itself, not a wait for something to happen.
	select {
	case <-time.After(agentOutage):
	case <-ctx.Done():
		t.Fatal(ctx.Err())
	}
	okAtStart, _ := l.counts()
	if _, err := e.composeCmd(ctx, "start", "spire-agent"); err != nil {
		t.Fatal(err)
	}
	outage := time.Since(stopped)
	waitFor(t, 2*time.Minute, "spire-agent healthy again", func() (bool, error) { return healthy(ctx, agent) })
	l.waitStreak(t, time.Now(), 2*int(readRate), time.Minute)
	l.stop()

	ok, failed := l.counts()
	t.Logf("compose: agent stopped for %s under %d clients at %.0f req/s: %d requests succeeded (%d during the outage), %d failed",
		outage.Round(100*time.Millisecond), readWorkers, readRate, ok, okAtStart-okAtStop, failed)
	for _, o := range l.outcomes() {
		if !o.ok() {
			t.Errorf("failed request: %s", o)
		}
	}
	// At least a quarter of the requests scheduled during the outage must have been served:
	// a stack that stalled instead of failing would otherwise pass.
	if want := int(agentOutage.Seconds() * readRate / 4); okAtStart-okAtStop < want {
		t.Errorf("only %d requests succeeded while the agent was down; want at least %d", okAtStart-okAtStop, want)
	}
	for _, s := range tenantServices {
		if got := restartState(t, e.container(t, s)); got != before[s] {
			t.Errorf("%s was restarted: %s → %s", s, before[s], got)
		}
	}
}

// payment is one transfer between bob and dave with its own Idempotency-Key.
type payment struct {
	req     request
	from    string // account ID
	to      string
	amount  int64
	id      string // the payment ID once the platform has answered 201
	answers []outcome
}

// TestLedgerPartition cuts the ledger container off its tenant network in the middle of a
// stream of payments and reconnects it. Every payment either succeeds or is refused with
// problem+json; retried with the same Idempotency-Key until it succeeds, each is posted
// exactly once, and the money in bob's and dave's accounts is conserved.
func TestLedgerPartition(t *testing.T) {
	e := need(t)
	ctx := t.Context()
	ledger := e.container(t, "bank-b-ledger")
	network := project + "_bank-b"
	bob, dave := demo.AccountID("bob@bank-b", "current").String(), demo.AccountID("dave@bank-b", "current").String()
	bobBefore, daveBefore := e.balance(t, "bob@bank-b", bob), e.balance(t, "dave@bank-b", dave)

	const total, workers, rate = 60, 4, 5.0
	payments := make([]*payment, total)
	for i := range payments {
		p := &payment{from: bob, to: dave, amount: int64(100 + i)}
		user := "bob@bank-b"
		if i%2 == 1 {
			p.from, p.to, user = dave, bob, "dave@bank-b"
		}
		body := fmt.Sprintf(`{"from_account":%q,"to_account":%q,"amount":{"amount":%d,"currency":"EUR"},"reference":"partition %d"}`,
			p.from, p.to, p.amount, i)
		p.req = request{user: user, method: http.MethodPost, path: "/bank-b/v1/payments", key: uuid.NewString(), body: body}
		payments[i] = p
	}
	l := e.startLoad(t, workers, rate, func(i int) request {
		if i >= total {
			// Past the last payment: reads keep the edge busy without moving money.
			return request{user: "bob@bank-b", method: http.MethodGet, path: "/bank-b/v1/accounts/" + bob + "/balance"}
		}
		return payments[i].req
	})
	l.waitOK(t, 10, 2*time.Minute)
	if _, err := run(ctx, "docker", "network", "disconnect", network, ledger); err != nil {
		t.Fatal(err)
	}
	cut := time.Now()
	// Wait until the partition is felt: some payment fails because the ledger is gone.
	waitFor(t, 2*time.Minute, "a payment refused during the partition", func() (bool, error) {
		for _, o := range l.outcomes() {
			if o.at.After(cut) && o.req.method == http.MethodPost && !o.ok() {
				return true, nil
			}
		}
		return false, nil
	})
	// Reconnect under the aliases compose gave it, so peers find it by name again.
	if _, err := run(ctx, "docker", "network", "connect", "--alias", "ledger.bank-b", "--alias", "bank-b-ledger", network, ledger); err != nil {
		t.Fatal(err)
	}
	healed := time.Now()
	t.Logf("compose: ledger partitioned for %s", healed.Sub(cut).Round(100*time.Millisecond))
	waitFor(t, 5*time.Minute, "every payment sent", func() (bool, error) {
		n := 0
		for _, o := range l.outcomes() {
			if o.req.method == http.MethodPost {
				n++
			}
		}
		return n >= total, nil
	})
	l.stop()

	byKey := map[string]*payment{}
	for _, p := range payments {
		byKey[p.req.key] = p
	}
	failedFirst := 0
	for _, o := range l.outcomes() {
		if o.req.method != http.MethodPost {
			continue
		}
		p := byKey[o.req.key]
		p.answers = append(p.answers, o)
		switch {
		case o.ok():
			p.id = paymentID(t, o)
		case o.err == nil && o.problem && o.status >= 400:
			failedFirst++
		default:
			t.Errorf("payment answered neither 2xx nor problem+json: %s", o)
		}
	}
	if failedFirst == 0 {
		t.Errorf("no payment failed while the ledger was cut off: the fault did not bite")
	}

	// Retry every payment that did not succeed, with its own key and body, until it does.
	for _, p := range payments {
		if p.id != "" {
			continue
		}
		waitFor(t, 3*time.Minute, "payment "+p.req.key+" accepted on retry", func() (bool, error) {
			o := e.do(ctx, p.req)
			p.answers = append(p.answers, o)
			if o.ok() {
				p.id = paymentID(t, o)
				return true, nil
			}
			if o.err != nil || !o.problem {
				t.Errorf("retry answered neither 2xx nor problem+json: %s", o)
			}
			return false, fmt.Errorf("%s", o)
		})
	}
	// A retry of an accepted payment replays it: same payment, nothing posted again.
	for _, p := range payments[:4] {
		o := e.do(ctx, p.req)
		if !o.ok() || paymentID(t, o) != p.id {
			t.Errorf("replay of %s: %s (want payment %s)", p.req.key, o, p.id)
		}
	}

	ids := map[string]bool{}
	var bobDelta int64
	for _, p := range payments {
		if ids[p.id] {
			t.Errorf("payment ID %s returned for two keys", p.id)
		}
		ids[p.id] = true
		if p.from == bob {
			bobDelta -= p.amount
		} else {
			bobDelta += p.amount
		}
	}
	bobAfter, daveAfter := e.balance(t, "bob@bank-b", bob), e.balance(t, "dave@bank-b", dave)
	retried := 0
	for _, p := range payments {
		if len(p.answers) > 1 {
			retried++
		}
	}
	t.Logf("compose: %d payments at %.0f/s over %d clients; %d refused during the partition (%s) and %d retried; bob %d → %d, dave %d → %d",
		total, rate, workers, failedFirst, statuses(l.outcomes()), retried, bobBefore, bobAfter, daveBefore, daveAfter)
	// Exactly once: the balances moved by the sum of the payments, no more and no less.
	if bobAfter != bobBefore+bobDelta {
		t.Errorf("bob's balance %d, want %d (each payment posted exactly once)", bobAfter, bobBefore+bobDelta)
	}
	if daveAfter != daveBefore-bobDelta {
		t.Errorf("dave's balance %d, want %d (each payment posted exactly once)", daveAfter, daveBefore-bobDelta)
	}
	if bobAfter+daveAfter != bobBefore+daveBefore {
		t.Errorf("money not conserved: %d + %d ≠ %d + %d", bobAfter, daveAfter, bobBefore, daveBefore)
	}
}

// paymentID is the id of a 201 payment answer.
func paymentID(t *testing.T, o outcome) string {
	t.Helper()
	var p struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal([]byte(o.raw), &p); err != nil || p.ID == "" {
		t.Fatalf("payment answer without an id: %s", o)
	}
	return p.ID
}

// balance reads an account's balance in minor units, waiting out a stack still recovering.
func (e *stackEnv) balance(t *testing.T, user, account string) int64 {
	t.Helper()
	var amount int64
	waitFor(t, 2*time.Minute, "balance of "+account, func() (bool, error) {
		o := e.do(t.Context(), request{user: user, method: http.MethodGet, path: "/bank-b/v1/accounts/" + account + "/balance"})
		if !o.ok() {
			return false, fmt.Errorf("%s", o)
		}
		var b struct {
			Balance struct {
				Amount int64 `json:"amount"`
			} `json:"balance"`
		}
		if err := json.Unmarshal([]byte(o.raw), &b); err != nil {
			return false, err
		}
		amount = b.Balance.Amount
		return true, nil
	})
	return amount
}

// TestPostgresRestart restarts both tenants' PostgreSQL containers under load. Requests
// during the restart may fail, but only with problem+json; afterwards the services serve
// again on their own, and none of their containers was restarted.
func TestPostgresRestart(t *testing.T) {
	e := need(t)
	ctx := t.Context()
	before := map[string]string{}
	for _, s := range tenantServices {
		before[s] = restartState(t, e.container(t, s))
	}
	pgs := []string{e.container(t, "postgres-bank-a"), e.container(t, "postgres-bank-b")}
	pgBefore := []string{restartState(t, pgs[0]), restartState(t, pgs[1])}

	l := e.startLoad(t, readWorkers, readRate, readRequests)
	l.waitOK(t, 2*int(readRate), time.Minute)
	restarted := time.Now()
	if _, err := e.composeCmd(ctx, "restart", "-t", "10", "postgres-bank-a", "postgres-bank-b"); err != nil {
		t.Fatal(err)
	}
	for i, id := range pgs {
		waitFor(t, 2*time.Minute, "PostgreSQL restarted and healthy", func() (bool, error) {
			if restartState(t, id) == pgBefore[i] {
				return false, nil
			}
			return healthy(ctx, id)
		})
	}
	back := time.Now()
	l.waitStreak(t, back, 2*int(readRate), 3*time.Minute)
	recovered := time.Now()
	l.stop()

	ok, failed := l.counts()
	t.Logf("compose: PostgreSQL restarted under %d clients at %.0f req/s: healthy %s after the restart began, services serving %s after that; %d succeeded, %d failed (%s)",
		readWorkers, readRate, back.Sub(restarted).Round(100*time.Millisecond), recovered.Sub(back).Round(100*time.Millisecond), ok, failed, statuses(l.outcomes()))
	for _, o := range l.outcomes() {
		if !o.ok() && (o.err != nil || !o.problem) {
			t.Errorf("failure without problem+json: %s", o)
		}
	}
	for _, s := range tenantServices {
		if got := restartState(t, e.container(t, s)); got != before[s] {
			t.Errorf("%s was restarted: %s → %s", s, before[s], got)
		}
	}
}

// TestTenantNetworks probes TCP reachability from inside containers' network namespaces
// (a throwaway probe container joins each one): a bank-a workload reaches its own database
// and has no route to bank-b's, by name or by address; the edge and the gateways reach no
// database at all.
func TestTenantNetworks(t *testing.T) {
	e := need(t)
	ctx := t.Context()
	ip := func(service, network string) string {
		addr, err := inspect(ctx, e.container(t, service), fmt.Sprintf(`{{(index .NetworkSettings.Networks %q).IPAddress}}`, project+"_"+network))
		if err != nil || addr == "" {
			t.Fatalf("address of %s on %s: %q, %v", service, network, addr, err)
		}
		return addr
	}
	pgA, pgB := ip("postgres-bank-a", "bank-a-db")+":5432", ip("postgres-bank-b", "bank-b-db")+":5432"
	for _, tc := range []struct {
		from, to string
		reach    bool
	}{
		{"bank-a-user", "postgres.bank-a:5432", true},
		{"bank-a-account", pgA, true},
		{"bank-b-ledger", pgB, true},
		{"bank-b-payment", "postgres.bank-b:5432", true},
		{"bank-a-user", "postgres.bank-b:5432", false},
		{"bank-a-user", pgB, false},
		{"bank-a-account", pgB, false},
		{"bank-b-ledger", pgA, false},
		{"bank-b-payment", "postgres.bank-a:5432", false},
		{"edge", pgA, false},
		{"edge", pgB, false},
		{"bank-a-gateway", pgA, false},
		{"bank-b-gateway", pgB, false},
	} {
		t.Run(tc.from+"→"+tc.to, func(t *testing.T) {
			out, err := run(ctx, "docker", "run", "--rm", "--pull", "never", "--network", "container:"+e.container(t, tc.from),
				"--user", "65532:65532", "--read-only", "--cap-drop", "ALL", "--entrypoint", "/app/composeinit",
				"ztbank/composeinit:dev", "dial", "-timeout", "3s", tc.to)
			if tc.reach && err != nil {
				t.Fatalf("want a connection: %v", err)
			}
			if !tc.reach {
				if err == nil {
					t.Fatalf("connected, want no route: %s", out)
				}
				if !strings.Contains(err.Error(), "dial ") {
					t.Fatalf("the probe failed for another reason than the connection: %v", err)
				}
			}
			if err != nil {
				t.Logf("compose: %s → %s: no connection (%v)", tc.from, tc.to, err)
			} else {
				t.Logf("compose: %s → %s: %s", tc.from, tc.to, out)
			}
		})
	}
}

// statuses summarises the failed outcomes by HTTP status, for the logs.
func statuses(os []outcome) string {
	n := map[string]int{}
	for _, o := range os {
		switch {
		case o.ok():
		case o.err != nil:
			n["no answer"]++
		case o.problem:
			n[fmt.Sprintf("%d problem+json", o.status)]++
		default:
			n[fmt.Sprintf("%d other", o.status)]++
		}
	}
	var parts []string
	for k, v := range n {
		parts = append(parts, fmt.Sprintf("%d× %s", v, k))
	}
	sort.Strings(parts)
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

// TestPasswordRotationUnderLoad restarts both tenants' rotators, which rotate every service
// password as they start: under load, no request fails, because every new connection reads
// the new password and open ones stay authenticated. The password files change, and only
// the rotators were restarted.
func TestPasswordRotationUnderLoad(t *testing.T) {
	e := need(t)
	ctx := t.Context()
	before := map[string]string{}
	for _, s := range tenantServices {
		before[s] = restartState(t, e.container(t, s))
	}
	services := []string{"bank-a-user", "bank-a-account", "bank-b-payment", "bank-b-ledger"}
	// read returns the modification time of the password file a service reads, through its
	// volume's directory on the host (the services' images have nothing to print a file).
	read := func(svc string) string {
		dir, err := inspect(ctx, e.container(t, svc), `{{range .Mounts}}{{if eq .Destination "/run/ztbank/db"}}{{.Source}}{{end}}{{end}}`)
		if err != nil || dir == "" {
			t.Fatalf("password volume of %s: %q %v", svc, dir, err)
		}
		st, err := run(ctx, "stat", "-c", "%y", dir+"/password")
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	old := map[string]string{}
	for _, svc := range services {
		old[svc] = read(svc)
	}
	l := e.startLoad(t, readWorkers, readRate, readRequests)
	l.waitOK(t, 2*int(readRate), time.Minute)
	if _, err := e.composeCmd(ctx, "restart", "bank-a-dbcreds", "bank-b-dbcreds"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 2*time.Minute, "every password rotated", func() (bool, error) {
		for _, svc := range services {
			if read(svc) == old[svc] {
				return false, nil
			}
		}
		return true, nil
	})
	// New connections must now use the new passwords: keep the load on until a further
	// stretch of requests has been served.
	l.waitStreak(t, time.Now(), 2*int(readRate), time.Minute)
	l.stop()
	ok, failed := l.counts()
	t.Logf("compose: passwords rotated under %d clients at %.0f req/s: %d succeeded, %d failed (%s)",
		readWorkers, readRate, ok, failed, statuses(l.outcomes()))
	for _, o := range l.outcomes() {
		if !o.ok() {
			t.Errorf("failed request: %s", o)
		}
	}
	for _, s := range tenantServices {
		if got := restartState(t, e.container(t, s)); got != before[s] {
			t.Errorf("%s was restarted: %s → %s", s, before[s], got)
		}
	}
}
