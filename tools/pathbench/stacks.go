package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ztbank/ztbank/devkit/demo"
	"github.com/ztbank/ztbank/devkit/devoidc"
	"github.com/ztbank/ztbank/libs/topology"
	"github.com/ztbank/ztbank/libs/transport"
	"github.com/ztbank/ztbank/tools/devstack/stack"
)

// Build tags of the two stacks. ztbench_off is the zero-trust-off reference build (see
// libs/transport/benchoff.go); ztbench_pprof serves net/http/pprof on ZTBANK_BENCH_PPROF so
// the hot path can be profiled. Both modes carry ztbench_pprof, so it cannot tell them apart.
const (
	tagsOn  = "ztbench_pprof"
	tagsOff = "ztbench_off ztbench_pprof"
	// benchOffConsent is what a ztbench_off binary needs in its environment to start
	// (transport.BenchOffEnv and BenchOffConsent, which exist only in that build).
	benchOffConsent = "ZTBANK_BENCH_ZERO_TRUST_OFF=measure-only-never-serve"
)

// mode is one running stack: zero trust on or off.
type mode struct {
	Name   string // "on" or "off"
	st     *stack.Stack
	tgt    *target
	pprof  map[string]string // workload → pprof address
	pgDir  string
	logins *logins
}

// paths are the two request paths of issue 14 as the topology names them: a read through
// a tenant's gateway to its account service and database, and a payment through another
// tenant's gateway to its payment service and on to its ledger.
type paths struct {
	ReadTenant, PayTenant string
	Workloads             []string // edge and every workload of both tenants
}

func choosePaths(topo *topology.Topology) (paths, error) {
	var p paths
	for _, t := range topo.Tenants {
		if _, ok := topo.TenantWorkload(t.Name, "account"); ok && p.ReadTenant == "" {
			p.ReadTenant = t.Name
		}
		if _, ok := topo.TenantWorkload(t.Name, "payment"); ok && p.PayTenant == "" {
			p.PayTenant = t.Name
		}
	}
	if p.ReadTenant == "" || p.PayTenant == "" {
		return p, fmt.Errorf("the topology needs a tenant with an account service and one with a payment service")
	}
	p.Workloads = []string{"edge"}
	for _, w := range topo.Workloads {
		if w.Tenant == p.ReadTenant || w.Tenant == p.PayTenant {
			p.Workloads = append(p.Workloads, w.Name)
		}
	}
	return p, nil
}

// startMode builds and starts one stack under dir.
func startMode(ctx context.Context, root, dir, name string, p paths, progress io.Writer) (*mode, error) {
	tags := tagsOn
	if name == "off" {
		tags = tagsOff
	}
	ports, err := stack.FreePorts(len(p.Workloads))
	if err != nil {
		return nil, err
	}
	m := &mode{Name: name, pprof: map[string]string{}}
	for i, w := range p.Workloads {
		m.pprof[w] = fmt.Sprintf("127.0.0.1:%d", ports[i])
	}
	st, err := stack.Start(ctx, stack.Options{Root: root, StateDir: dir, FreePorts: true, FrontDoor: true, Postgres: true,
		Services: p.Workloads, BuildTags: tags, Progress: prefixed(progress, "["+name+"] "),
		Configure: func(s *stack.Stack) {
			for wl, svc := range s.Services {
				// The same limits on and off: the edge's per-user and per-tenant rates are off
				// (the load is a few users at hundreds of requests a second) and the in-flight
				// bound is above anything the load reaches, so no answer is a limiter's 429.
				svc.Env = append(svc.Env, "ZTBANK_TENANT_CONCURRENCY=1024", "ZTBANK_BENCH_PPROF="+m.pprof[wl])
				if wl == "edge" {
					svc.Env = append(svc.Env, "EDGE_RATE_PER_USER=0", "EDGE_RATE_PER_TENANT=0")
				}
				if name == "off" {
					svc.Env = append(svc.Env, benchOffConsent)
				}
			}
		}})
	if err != nil {
		return nil, fmt.Errorf("start the zero-trust-%s stack: %w", name, err)
	}
	m.st = st
	m.pgDir = st.Postgres.Dir
	client, err := publicClient(st.Edge.CAFile)
	if err != nil {
		st.Stop()
		return nil, err
	}
	m.logins = &logins{client: client, issuer: st.OIDC.Issuer, passwords: st.OIDC.PasswordsFile, tokens: map[string]token{}}
	ops, err := buildOps(st.Edge.URL, p, m.logins)
	if err != nil {
		st.Stop()
		return nil, err
	}
	m.tgt = &target{client: client, ops: ops}
	return m, nil
}

// publicClient is the load's client: HTTPS to the edge with the dev CA, kept alive, with
// enough idle connections that the open loop never waits for one. Both modes use it
// unchanged.
func publicClient(caFile string) (*http.Client, error) {
	pool, err := transport.CAPool(caFile)
	if err != nil {
		return nil, err
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	tr.MaxIdleConns, tr.MaxIdleConnsPerHost = 1024, 1024
	return &http.Client{Timeout: 20 * time.Second, Transport: tr}, nil
}

// logins holds each demo user's access token, renewed well before the provider's expiry.
type logins struct {
	client    *http.Client
	issuer    string
	passwords string
	mu        sync.Mutex
	tokens    map[string]token
	users     []string // whose tokens the ops send
}

type token struct {
	raw string
	at  time.Time
}

// tokenRenewal is well inside devoidc's 10-minute access-token lifetime.
const tokenRenewal = 4 * time.Minute

func (l *logins) token(ctx context.Context, user string) (string, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if t, ok := l.tokens[user]; ok && time.Since(t.at) < tokenRenewal {
		return t.raw, nil
	}
	pw, err := devoidc.ReadSecrets(l.passwords)
	if err != nil {
		return "", err
	}
	tok, err := devoidc.Login(ctx, l.client, l.issuer, devoidc.CLIClientID, user, pw[user])
	if err != nil {
		return "", fmt.Errorf("login %s: %w", user, err)
	}
	l.tokens[user] = token{raw: tok.AccessToken, at: time.Now()}
	return tok.AccessToken, nil
}

// refresh renews every token that is due, so no request of a measured window logs in.
func (l *logins) refresh(ctx context.Context, users []string) error {
	for _, u := range users {
		if _, err := l.token(ctx, u); err != nil {
			return err
		}
	}
	return nil
}

func (l *logins) cached(user string) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.tokens[user].raw
}

// buildOps returns the two request kinds, alternating: a customer reading one of their
// accounts, and a payment of one minor unit from one customer of the paying tenant to
// another.
func buildOps(edgeURL string, p paths, l *logins) ([]op, error) {
	var reader string
	var readAcct string
	var payers []demo.Account
	users := map[string]demo.User{}
	for _, u := range demo.Users() {
		users[u.Username] = u
	}
	for _, a := range demo.Accounts() {
		if users[a.Owner].Role != demo.RoleCustomer {
			continue
		}
		if a.Tenant == p.ReadTenant && reader == "" {
			reader, readAcct = a.Owner, a.ID.String()
		}
		if a.Tenant == p.PayTenant && !slices.ContainsFunc(payers, func(x demo.Account) bool { return x.Owner == a.Owner }) {
			payers = append(payers, a)
		}
	}
	if reader == "" || len(payers) < 2 {
		return nil, fmt.Errorf("the demo cast needs a customer account in %s and two customers with accounts in %s", p.ReadTenant, p.PayTenant)
	}
	read := op{Path: "read", Hops: 2, build: func(ctx context.Context, _ int64) (*http.Request, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, edgeURL+"/"+p.ReadTenant+"/v1/accounts/"+readAcct, nil)
		if err != nil {
			return nil, err
		}
		req.Header.Set("Authorization", "Bearer "+l.cached(reader))
		return req, nil
	}}
	pay := op{Path: "pay", Hops: 3, build: func(ctx context.Context, i int64) (*http.Request, error) {
		// Always the same direction: the payer's balance covers far more payments than a run
		// makes. Concurrent payments from one account still contend in the ledger's
		// serializable transactions; the report counts the ones that exhaust their retries.
		from, to := payers[0], payers[1]
		body := fmt.Sprintf(`{"from_account":%q,"to_account":%q,"amount":{"amount":1,"currency":%q},"reference":"pathbench"}`,
			from.ID.String(), to.ID.String(), from.Currency)
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, edgeURL+"/"+p.PayTenant+"/v1/payments", strings.NewReader(body))
		if err != nil {
			return nil, err
		}
		req.Header.Set("Authorization", "Bearer "+l.cached(from.Owner))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Idempotency-Key", idempotencyKey())
		return req, nil
	}}
	l.users = []string{reader, payers[0].Owner, payers[1].Owner}
	return []op{read, pay}, nil
}

// pids returns the process IDs of the stack's services and of its PostgreSQL server
// (postmaster and backends), which the CPU and memory figures cover.
func (m *mode) pids() (services map[string]int, pg []int) {
	services = map[string]int{}
	for name, svc := range m.st.Services {
		services[name] = svc.PID()
	}
	return services, postgresPIDs(m.pgDir)
}

// postgresPIDs finds the postmaster whose command line names dir and its children.
func postgresPIDs(dir string) []int {
	if dir == "" {
		return nil
	}
	entries, _ := os.ReadDir("/proc")
	parent := map[int]int{}
	var master int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmd, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if strings.Contains(string(cmd), dir) && strings.Contains(string(cmd), "postgres") {
			if master == 0 || pid < master {
				master = pid
			}
		}
		if st, err := readStat(pid); err == nil {
			parent[pid] = st.ppid
		}
	}
	if master == 0 {
		return nil
	}
	out := []int{master}
	for pid, pp := range parent {
		if pp == master {
			out = append(out, pid)
		}
	}
	return out
}

type procStat struct {
	ppid  int
	ticks int64 // utime + stime, in clock ticks
}

func readStat(pid int) (procStat, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return procStat{}, err
	}
	return parseStat(string(b))
}

// parseStat reads ppid, utime and stime from a /proc/<pid>/stat line. The command name
// (field 2) may contain spaces and parentheses, so fields are counted after its last ')'.
func parseStat(s string) (procStat, error) {
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return procStat{}, fmt.Errorf("stat line without a command: %q", s)
	}
	f := strings.Fields(s[i+1:])
	// f[0] is field 3 (state); ppid is field 4, utime 14, stime 15.
	if len(f) < 13 {
		return procStat{}, fmt.Errorf("short stat line: %q", s)
	}
	ppid, err1 := strconv.Atoi(f[1])
	ut, err2 := strconv.ParseInt(f[11], 10, 64)
	st, err3 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil || err3 != nil {
		return procStat{}, fmt.Errorf("stat line: %q", s)
	}
	return procStat{ppid: ppid, ticks: ut + st}, nil
}

// clockTicks is USER_HZ, 100 on Linux for every architecture Go supports.
const clockTicks = 100

// cpuSeconds sums the CPU time of pids (processes that have gone are skipped).
func cpuSeconds(pids []int) float64 {
	var t int64
	for _, pid := range pids {
		if st, err := readStat(pid); err == nil {
			t += st.ticks
		}
	}
	return float64(t) / clockTicks
}

// rssMB is a process's resident set (VmRSS) in MB, or 0 if it cannot be read.
func rssMB(pid int) float64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 64)
			return kb / 1024
		}
	}
	return 0
}

// scrape sums, over the stack's services, every series of the named counters on their
// health ports' /metrics, keyed "name" and "name{labels}".
func (m *mode) scrape(ctx context.Context, names ...string) map[string]float64 {
	out := map[string]float64{}
	for _, svc := range m.st.Services {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+svc.Health+"/metrics", nil)
		if err != nil {
			continue
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			continue
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		for k, v := range parseMetrics(string(b), names) {
			out[k] += v
		}
	}
	return out
}

// parseMetrics reads the samples of the named metrics from Prometheus text format: each
// series under "name{labels}" and their sum under "name".
func parseMetrics(text string, names []string) map[string]float64 {
	out := map[string]float64{}
	for _, line := range strings.Split(text, "\n") {
		if line == "" || line[0] == '#' {
			continue
		}
		series, val, ok := strings.Cut(line, " ")
		if !ok {
			continue
		}
		name, _, _ := strings.Cut(series, "{")
		if !slices.Contains(names, name) {
			continue
		}
		v, err := strconv.ParseFloat(strings.Fields(val)[0], 64)
		if err != nil {
			continue
		}
		out[series] += v
		if series != name {
			out[name] += v
		}
	}
	return out
}

// retriesExhausted counts, in the stack's service logs, requests that failed because a
// database transaction ran out of serialization retries (hot-account contention).
func (m *mode) retriesExhausted() int {
	n := 0
	for _, svc := range m.st.Services {
		b, err := os.ReadFile(svc.LogPath)
		if err != nil {
			continue
		}
		n += strings.Count(string(b), "transaction retries exhausted")
	}
	return n
}

// prefixed writes each line to w with prefix in front.
func prefixed(w io.Writer, prefix string) io.Writer {
	pr, pw := io.Pipe()
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			fmt.Fprintf(w, "%s%s\n", prefix, sc.Text())
		}
	}()
	return pw
}
