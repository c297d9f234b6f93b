// Package noisytenant shows on the real local stack that one tenant's flood cannot starve
// another: while every user of one tenant sends requests as fast as the edge answers, the
// other tenant's latency stays within twice its idle value and it is never refused.
package noisytenant

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ztbank/ztbank/devkit/demo"
	"github.com/ztbank/ztbank/devkit/devoidc"
	"github.com/ztbank/ztbank/devkit/localspire"
	"github.com/ztbank/ztbank/libs/topology"
	"github.com/ztbank/ztbank/tools/devstack/stack"
)

// The limits the stack's edge runs with. The quiet tenant's schedule stays inside them
// (quietRate per user is below userRate; all its users together below tenantRate), so any
// 429 it gets is the flood's doing.
const (
	userRate, userBurst     = 40, 40
	tenantRate, tenantBurst = 100, 100
	tenantInFlight          = 16
	// quietRate is each quiet user's requests per second, paced by a ticker: the load
	// schedule of a well-behaved client, not a wait for a condition.
	quietRate = 25
	// samples per phase: p99 is then the 4th-largest latency, not the maximum.
	samples = 400
	// floodClients per noisy user send as fast as the flood's schedule lets them, ignoring
	// Retry-After. The schedule is floodFactor times the tenant's whole budget: a flood the
	// limits must refuse most of, but not an unbounded loop, which on this 2-core machine
	// (load generator, edge and services share it) measures the generator's own CPU use
	// rather than tenant isolation (ADR 0990).
	floodClients = 6
	floodFactor  = 3
)

var (
	st     *stack.Stack
	public *http.Client
)

func TestMain(m *testing.M) {
	if slices.Contains(os.Args, "-test.short=true") || slices.Contains(os.Args, "-test.short") {
		fmt.Println("skipping the local-stack noisy-tenant test in -short mode")
		os.Exit(0)
	}
	os.Exit(run(m))
}

func run(m *testing.M) int {
	root, err := localspire.RepoRoot()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	tmp, err := os.MkdirTemp("", "ztnoisy")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(tmp)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	st, err = stack.Start(ctx, stack.Options{Root: root, StateDir: tmp, FreePorts: true, FrontDoor: true, Postgres: true,
		Progress: os.Stderr, Configure: func(s *stack.Stack) {
			if e := s.Services["edge"]; e != nil {
				e.Env = append(e.Env, fmt.Sprintf("EDGE_RATE_PER_USER=%d", userRate), fmt.Sprintf("EDGE_BURST_PER_USER=%d", userBurst),
					fmt.Sprintf("EDGE_RATE_PER_TENANT=%d", tenantRate), fmt.Sprintf("EDGE_BURST_PER_TENANT=%d", tenantBurst),
					fmt.Sprintf("ZTBANK_TENANT_CONCURRENCY=%d", tenantInFlight))
			}
		}})
	if err != nil {
		fmt.Fprintln(os.Stderr, "start local stack:", err)
		return 1
	}
	defer st.Stop()
	ca, err := os.ReadFile(st.Edge.CAFile)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca)
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	tr.MaxIdleConnsPerHost = 256
	public = &http.Client{Timeout: 15 * time.Second, Transport: tr}
	return m.Run()
}

// user is a logged-in demo user and the route it calls.
type user struct {
	name, tenant, path, token string
}

// usersOf logs in every demo user of tenant. The route is one every role may read and that
// reaches the tenant's database: the user's profile where the tenant runs the user service,
// else the caller's ledger accounts.
func usersOf(t *testing.T, topo *topology.Topology, tenant string) []user {
	t.Helper()
	path := "/v1/accounts"
	if _, ok := topo.TenantWorkload(tenant, "user"); ok {
		path = "/v1/users/me"
	}
	pw, err := devoidc.ReadSecrets(st.OIDC.PasswordsFile)
	if err != nil {
		t.Fatal(err)
	}
	var out []user
	for _, u := range demo.Users() {
		if u.Tenant != tenant {
			continue
		}
		tok, err := devoidc.Login(t.Context(), public, st.OIDC.Issuer, devoidc.CLIClientID, u.Username, pw[u.Username])
		if err != nil {
			t.Fatalf("login %s: %v", u.Username, err)
		}
		out = append(out, user{u.Username, tenant, "/" + tenant + path, tok.AccessToken})
	}
	if len(out) == 0 {
		t.Fatalf("the demo cast has no user of tenant %s", tenant)
	}
	return out
}

// call sends one GET as u and returns its status and latency.
func call(u user) (int, time.Duration, error) {
	req, err := http.NewRequest(http.MethodGet, st.Edge.URL+u.path, nil)
	if err != nil {
		return 0, 0, err
	}
	req.Header.Set("Authorization", "Bearer "+u.token)
	start := time.Now()
	resp, err := public.Do(req)
	if err != nil {
		return 0, 0, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, time.Since(start), nil
}

// phase is what the quiet tenant saw over one run of its schedule.
type phase struct {
	latencies []time.Duration
	status    map[int]int
}

func (p phase) p99() time.Duration {
	s := slices.Clone(p.latencies)
	slices.Sort(s)
	return s[(len(s)*99+99)/100-1]
}

// quiet runs the quiet tenant's schedule: each user quietRate requests per second until n
// requests in all have been answered.
func quiet(t *testing.T, users []user, n int) phase {
	t.Helper()
	var (
		mu   sync.Mutex
		out  = phase{status: map[int]int{}}
		left atomic.Int64
		wg   sync.WaitGroup
	)
	left.Store(int64(n))
	for _, u := range users {
		wg.Go(func() {
			tick := time.NewTicker(time.Second / quietRate)
			defer tick.Stop()
			for left.Add(-1) >= 0 {
				<-tick.C
				status, d, err := call(u)
				if err != nil {
					t.Errorf("%s: %v", u.name, err)
					return
				}
				mu.Lock()
				out.status[status]++
				out.latencies = append(out.latencies, d)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return out
}

// TestNoisyTenantCannotStarveAnother floods from every user of one tenant and measures the
// other's p99 against its idle value (ADR 0990). Tenants come from the topology: the flood
// comes from the last tenant (bank-b in the embedded topology), the first is measured.
func TestNoisyTenantCannotStarveAnother(t *testing.T) {
	tenants := st.Topo.Tenants
	if len(tenants) < 2 {
		t.Fatalf("the topology has %d tenants, want two", len(tenants))
	}
	calm, noisy := usersOf(t, st.Topo, tenants[0].Name), usersOf(t, st.Topo, tenants[len(tenants)-1].Name)

	// Warm up both tenants' paths (TLS sessions, exchange cache, pools), then measure idle.
	quiet(t, calm, 50)
	quiet(t, noisy, 50)
	idle := quiet(t, calm, samples)

	// The flood: every noisy user, floodClients each, back to back until stopped.
	var (
		floodStatus sync.Map // status → *atomic.Int64
		floodSent   atomic.Int64
		limited     = make(chan struct{})
		limitedOnce sync.Once
		done        = make(chan struct{})
		wg          sync.WaitGroup
	)
	schedule := time.NewTicker(time.Second / (floodFactor * tenantRate))
	defer schedule.Stop()
	for _, u := range noisy {
		for range floodClients {
			wg.Go(func() {
				for {
					select {
					case <-done:
						return
					case <-schedule.C:
					}
					status, _, err := call(u)
					if err != nil {
						continue
					}
					floodSent.Add(1)
					c, _ := floodStatus.LoadOrStore(status, new(atomic.Int64))
					c.(*atomic.Int64).Add(1)
					if status == http.StatusTooManyRequests {
						limitedOnce.Do(func() { close(limited) })
					}
				}
			})
		}
	}
	// Measure only once the flood is past its burst and being refused.
	select {
	case <-limited:
	case <-time.After(time.Minute):
		close(done)
		wg.Wait()
		t.Fatal("the flood was never answered 429: the limits are not in force")
	}
	floodStart := floodSent.Load()
	flooded := quiet(t, calm, samples)
	floodEnd := floodSent.Load()
	close(done)
	wg.Wait()

	counts := map[int]int64{}
	floodStatus.Range(func(k, v any) bool { counts[k.(int)] = v.(*atomic.Int64).Load(); return true })
	ratio := float64(flooded.p99()) / float64(idle.p99())
	t.Logf("quiet tenant %s: idle p99 %v (%d requests, statuses %v); flooded p99 %v (%d requests, statuses %v); ratio %.2f",
		tenants[0].Name, idle.p99(), len(idle.latencies), idle.status, flooded.p99(), len(flooded.latencies), flooded.status, ratio)
	t.Logf("noisy tenant %s: %d users × %d clients sent %d requests during the measurement (%d in all, scheduled at %d/s, %d× its tenant rate), statuses %v",
		tenants[len(tenants)-1].Name, len(noisy), floodClients, floodEnd-floodStart, floodSent.Load(), floodFactor*tenantRate, floodFactor, counts)

	for _, p := range []struct {
		name string
		ph   phase
	}{{"idle", idle}, {"flooded", flooded}} {
		if p.ph.status[http.StatusOK] != samples || len(p.ph.status) != 1 {
			t.Errorf("%s phase: quiet tenant statuses %v, want %d × 200 and no 429", p.name, p.ph.status, samples)
		}
	}
	if counts[http.StatusTooManyRequests] == 0 {
		t.Errorf("the noisy tenant was never refused: the flood did not exceed its limits")
	}
	if ratio > 2 {
		t.Errorf("quiet tenant's p99 under the flood is %.2f× its idle p99 (%v vs %v), want at most 2×", ratio, flooded.p99(), idle.p99())
	}
}
