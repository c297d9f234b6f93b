// Command authzbench measures one policy decision four ways in one interleaved run: the
// embedded engine as services run it (the compiled residual policy, ADR 0980), the embedded
// engine evaluating the full policy with OPA with and without its memo, and a real
// `opa run --server` (the OPA version libs pins, built as the Go tool tools/opa) loaded
// with the same policy and data and asked over loopback HTTP with keep-alive. Inputs are
// traffic-shaped (per-request resource IDs, many users, a tenth denied) and every OPA answer
// is compared with the embedded one, so the two are proven to decide the same.
//
//	go run ./tools/authzbench -opa .dev/bin/opa -n 20000 -json .dev/bench/authz.json -md docs/performance.md
//
// It writes the results as JSON, a Markdown page with a table, an SVG chart beside it and a
// CPU profile's top costs of the embedded decision, and the machine it ran on.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/ztbank/ztbank/devkit/localports"
	"github.com/ztbank/ztbank/libs/authz"
	"github.com/ztbank/ztbank/libs/cli"
	"github.com/ztbank/ztbank/libs/topology"
	"github.com/ztbank/ztbank/tools/internal/hostinfo"
)

func main() { cli.Main("authzbench", run) }

// Goals from issue 14 for the embedded decision without a memo.
const (
	goalP50     = 15 * time.Microsecond
	goalP99     = 100 * time.Microsecond
	goalSpeedup = 20.0
)

type config struct {
	opa      string
	workload string
	n        int
	warmup   int
	jsonOut  string
	mdOut    string
	seed     uint64

	components bool
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet(args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg config
	fs.StringVar(&cfg.opa, "opa", ".dev/bin/opa", "the opa binary (make opa builds it)")
	fs.StringVar(&cfg.workload, "workload", "bank-a/account", "topology workload whose engine is measured")
	fs.IntVar(&cfg.n, "n", 20000, "measured decisions per engine")
	fs.IntVar(&cfg.warmup, "warmup", 1000, "unmeasured decisions per engine first")
	fs.StringVar(&cfg.jsonOut, "json", "", "write the results as JSON here")
	fs.StringVar(&cfg.mdOut, "md", "", "write the results page (Markdown, SVG chart beside it) here")
	fs.Uint64Var(&cfg.seed, "seed", 14, "input generator seed")
	fs.BoolVar(&cfg.components, "components", false, "also run the handshake, IAM-token and JWT-verify measurements of libs (from the repository root)")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if cfg.n < 100 {
		return errors.New("-n must be at least 100")
	}
	res, err := measure(ctx, cfg, stderr)
	if err != nil {
		return err
	}
	if cfg.components {
		res.Components = measureComponents(ctx)
	}
	fmt.Fprint(stdout, res.table())
	if cfg.jsonOut != "" {
		b, _ := json.MarshalIndent(res, "", "  ")
		if err := writeFile(cfg.jsonOut, append(b, '\n')); err != nil {
			return err
		}
	}
	if cfg.mdOut != "" {
		if err := writePage(cfg.mdOut, res); err != nil {
			return err
		}
	}
	return nil
}

// dist is a latency distribution in microseconds.
type dist struct {
	Name string  `json:"name"`
	N    int     `json:"n"`
	P50  float64 `json:"p50_us"`
	P90  float64 `json:"p90_us"`
	P99  float64 `json:"p99_us"`
	Mean float64 `json:"mean_us"`
}

func summarise(name string, d []time.Duration) dist {
	s := slices.Clone(d)
	slices.Sort(s)
	q := func(p float64) float64 {
		i := int(p*float64(len(s))+0.5) - 1
		return float64(s[max(0, min(i, len(s)-1))].Nanoseconds()) / 1e3
	}
	var sum time.Duration
	for _, x := range s {
		sum += x
	}
	return dist{Name: name, N: len(s), P50: q(0.50), P90: q(0.90), P99: q(0.99),
		Mean: float64(sum.Nanoseconds()) / 1e3 / float64(len(s))}
}

type results struct {
	Workload        string   `json:"workload"`
	OPAVersion      string   `json:"opa_version"`
	Allowed         int      `json:"allowed"`
	Decisions       int      `json:"decisions"`
	Dists           []dist   `json:"distributions"` // memo, no memo, OPA server
	SpeedupP50      float64  `json:"speedup_p50_opa_server_over_embedded"`
	SpeedupP99      float64  `json:"speedup_p99_opa_server_over_embedded"`
	ResidualGainP50 float64  `json:"speedup_p50_full_nomemo_over_residual"`
	Machine         machine  `json:"machine"`
	Profile         []string `json:"profile_top"`

	Components []component `json:"components,omitempty"`

	AllocsPerDecision float64   `json:"allocs_per_decision"`
	BytesPerDecision  float64   `json:"bytes_per_decision"`
	When              time.Time `json:"when"`
}

func measure(ctx context.Context, cfg config, stderr io.Writer) (*results, error) {
	topo := topology.Default()
	w, ok := topo.Workload(cfg.workload)
	if !ok {
		return nil, fmt.Errorf("workload %q is not in the topology", cfg.workload)
	}
	svc := authz.Service{Workload: w.Name, Tenant: w.Tenant, ID: w.ID}
	newEngine := func(opts ...authz.Option) (*authz.Engine, error) {
		opts = append([]authz.Option{authz.WithAuditWriter(io.Discard), authz.WithRegisterer(prometheus.NewRegistry())}, opts...)
		return authz.New(ctx, svc, topo, opts...)
	}
	// The engine as services run it (the compiled residual policy, ADR 0980), and OPA's
	// evaluation of the full policy with and without the memo (the engine before it).
	var engines [3]*authz.Engine
	for i, opts := range [][]authz.Option{nil, {authz.WithoutResidual()}, {authz.WithoutResidual(), authz.WithoutDecisionCache()}} {
		e, err := newEngine(opts...)
		if err != nil {
			return nil, err
		}
		engines[i] = e
	}
	fast := engines[0]
	inputs, err := trafficInputs(topo, w, cfg.n+cfg.warmup, cfg.seed)
	if err != nil {
		return nil, err
	}
	bodies := make([][]byte, len(inputs))
	for i, in := range inputs {
		doc, err := fast.InputDocument(in)
		if err != nil {
			return nil, err
		}
		// Encoded before timing: the OPA figure is the server's decision plus loopback
		// HTTP, not the client's JSON encoding.
		bodies[i], _ = json.Marshal(map[string]any{"input": doc})
	}

	opa, err := startOPA(ctx, cfg.opa, fast, stderr)
	if err != nil {
		return nil, err
	}
	defer opa.stop()

	res := &results{Workload: w.Name, OPAVersion: opa.version, Machine: describeMachine(), When: time.Now().UTC()}
	lat := make([][]time.Duration, len(engines)+1) // the engines, then the OPA server
	for i, in := range inputs {
		// Rotate which engine goes first so none always runs on caches warmed by another.
		var got [len(engines) + 1]authz.Decision
		var took [len(engines) + 1]time.Duration
		for k := range len(got) {
			j := (i + k) % len(got)
			t0 := time.Now()
			if j < len(engines) {
				got[j] = engines[j].Decide(ctx, in)
				took[j] = time.Since(t0)
				continue
			}
			od, err := opa.decide(ctx, bodies[i])
			took[j] = time.Since(t0)
			if err != nil {
				return nil, err
			}
			got[j] = authz.Decision{Allow: od.Allow, Reason: od.Reason}
		}
		for j := range got {
			if got[j] != got[0] {
				return nil, fmt.Errorf("decision %d differs: %v (embedded residual, OPA full memo, OPA full, OPA server)", i, got)
			}
		}
		if i < cfg.warmup {
			continue
		}
		for j := range took {
			lat[j] = append(lat[j], took[j])
		}
		res.Decisions++
		if got[0].Allow {
			res.Allowed++
		}
	}
	res.Dists = []dist{
		summarise("embedded: compiled residual (as services run)", lat[0]),
		summarise("embedded: OPA, full policy, memo", lat[1]),
		summarise("embedded: OPA, full policy, no memo", lat[2]),
		summarise("opa run --server, loopback HTTP", lat[3]),
	}
	res.SpeedupP50 = res.Dists[3].P50 / res.Dists[0].P50
	res.SpeedupP99 = res.Dists[3].P99 / res.Dists[0].P99
	res.ResidualGainP50 = res.Dists[2].P50 / res.Dists[0].P50
	// A separate phase, the engine as services run it alone, so the profile and the
	// allocation count belong to its decisions, not to the other rows or the HTTP client.
	prof := new(bytes.Buffer)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	if err := pprof.StartCPUProfile(prof); err != nil {
		return nil, err
	}
	// Ten passes: a decision takes microseconds, and the profiler samples every 10 ms.
	const passes = 10
	for range passes {
		for _, in := range inputs[cfg.warmup:] {
			fast.Decide(ctx, in)
		}
	}
	pprof.StopCPUProfile()
	runtime.ReadMemStats(&after)
	n := float64(passes * (len(inputs) - cfg.warmup))
	res.AllocsPerDecision = float64(after.Mallocs-before.Mallocs) / n
	res.BytesPerDecision = float64(after.TotalAlloc-before.TotalAlloc) / n
	res.Profile = topCosts(prof.Bytes(), 5)
	return res, nil
}

// trafficInputs mirrors what a service sees: its allowed callers, read routes three times in
// four, customers reading their own resources with a fresh resource ID every request, a few
// staff, and about one request in ten refused (a neighbour's or another tenant's resource,
// staff moving money).
func trafficInputs(topo *topology.Topology, w topology.Workload, n int, seed uint64) ([]authz.Input, error) {
	callers := topo.AllowedCallers(w.Name)
	if len(callers) == 0 {
		return nil, fmt.Errorf("no workload may call %s", w.Name)
	}
	other := ""
	for _, t := range topo.Tenants {
		if t.Name != w.Tenant {
			other = t.Name
		}
	}
	read, write := "", ""
	for _, p := range []string{"accounts:read", "payments:read", "ledger:read", "users:read"} {
		if read == "" && strings.HasPrefix(w.Service, strings.TrimSuffix(strings.Split(p, ":")[0], "s")) {
			read = p
		}
	}
	if read == "" {
		read = "accounts:read"
	}
	write = "payments:create"
	user := func(tenant, id string) spiffeid.ID {
		return spiffeid.RequireFromPath(spiffeid.RequireTrustDomainFromString(tenant), "/user/"+id)
	}
	rnd := rand.New(rand.NewPCG(seed, seed^0xa11ce))
	out := make([]authz.Input, n)
	for i := range out {
		action, method, route := read, http.MethodGet, "/v1/resources/{id}"
		if rnd.IntN(4) == 0 {
			action, method, route = write, http.MethodPost, "/v1/resources/{id}/transfers"
		}
		u, roles := user(w.Tenant, fmt.Sprintf("c-%06d", rnd.IntN(100000))), []string{authz.RoleCustomer}
		if rnd.IntN(20) == 0 {
			u, roles = user(w.Tenant, fmt.Sprintf("s-%03d", rnd.IntN(50))), []string{authz.RoleStaff}
		}
		id := strconv.FormatUint(rnd.Uint64(), 16)
		owner, tenant := u, w.Tenant
		switch rnd.IntN(20) {
		case 0:
			owner = user(w.Tenant, fmt.Sprintf("c-%06d", rnd.IntN(100000)))
		case 1:
			if other != "" {
				owner, tenant = user(other, fmt.Sprintf("c-%06d", rnd.IntN(100000))), other
			}
		}
		out[i] = authz.Input{Caller: callers[rnd.IntN(len(callers))], User: u, Tenant: w.Tenant, Roles: roles,
			Action: action, Method: method, Route: route, Params: map[string]string{"id": id},
			Resource: &authz.Resource{Kind: "resource", ID: id, Owner: owner, Tenant: tenant}}
	}
	return out, nil
}

type opaServer struct {
	cmd     *exec.Cmd
	url     string
	client  *http.Client
	version string
	dir     string
}

type opaDecision struct {
	Allow  bool   `json:"allow"`
	Reason string `json:"reason"`
}

// startOPA writes the engine's policy and data to a temporary directory, starts `opa run
// --server` on a reserved loopback port and waits until it reports healthy.
func startOPA(ctx context.Context, bin string, e *authz.Engine, stderr io.Writer) (*opaServer, error) {
	if _, err := os.Stat(bin); err != nil {
		return nil, fmt.Errorf("opa binary: %w (make opa builds it)", err)
	}
	out, err := exec.CommandContext(ctx, bin, "version").Output()
	if err != nil {
		return nil, fmt.Errorf("opa version: %w", err)
	}
	version := strings.TrimPrefix(strings.SplitN(string(out), "\n", 2)[0], "Version: ")
	dir, err := os.MkdirTemp("", "authzbench-")
	if err != nil {
		return nil, err
	}
	if err := e.WriteBundle(dir); err != nil {
		return nil, err
	}
	ports, err := localports.Reserve(1)
	if err != nil {
		return nil, err
	}
	addr := "127.0.0.1:" + strconv.Itoa(ports[0])
	cmd := exec.CommandContext(ctx, bin, "run", "--server", "--addr", addr, "--log-level", "error",
		"--skip-version-check", dir)
	cmd.Stdout, cmd.Stderr = stderr, stderr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start opa: %w", err)
	}
	s := &opaServer{cmd: cmd, url: "http://" + addr, version: version, dir: dir,
		client: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4, DisableCompression: true}}}
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := s.client.Get(s.url + "/health")
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return s, nil
			}
		}
		if time.Now().After(deadline) {
			s.stop()
			return nil, fmt.Errorf("opa at %s not healthy after 30 s: %v", addr, err)
		}
		select {
		case <-ctx.Done():
			s.stop()
			return nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (s *opaServer) decide(ctx context.Context, body []byte) (opaDecision, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.url+"/v1/data/ztbank/authz/decision", bytes.NewReader(body))
	if err != nil {
		return opaDecision{}, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := s.client.Do(req)
	if err != nil {
		return opaDecision{}, fmt.Errorf("ask opa: %w", err)
	}
	defer resp.Body.Close()
	var out struct {
		Result *opaDecision `json:"result"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != http.StatusOK || out.Result == nil {
		return opaDecision{}, fmt.Errorf("opa answered %s: %v", resp.Status, err)
	}
	return *out.Result, nil
}

func (s *opaServer) stop() {
	if s.cmd.Process != nil {
		s.cmd.Process.Signal(os.Interrupt)
		s.cmd.Wait()
	}
	os.RemoveAll(s.dir)
}

// topCosts runs `go tool pprof -top` on the profile of this binary and returns the n
// functions with the most time of their own; a pprof failure is reported, not fatal.
func topCosts(profile []byte, n int) []string {
	exe, err := os.Executable()
	if err != nil {
		return nil
	}
	f, err := os.CreateTemp("", "authzbench-*.pprof")
	if err != nil {
		return nil
	}
	defer os.Remove(f.Name())
	f.Write(profile)
	f.Close()
	out, err := exec.Command("go", "tool", "pprof", "-top", "-nodecount="+strconv.Itoa(n), exe, f.Name()).Output()
	if err != nil {
		return []string{"pprof failed: " + err.Error()}
	}
	var lines []string
	inTable := false
	for _, l := range strings.Split(string(out), "\n") {
		if strings.Contains(l, "flat%") {
			inTable = true
			continue
		}
		if inTable && strings.TrimSpace(l) != "" {
			lines = append(lines, strings.Join(strings.Fields(l), " "))
		}
	}
	return lines
}

// machine is the host and its load when the run ended: the engines share the cores with
// whatever else runs.
type machine struct {
	hostinfo.Info
	Load string `json:"loadavg_at_end"`
}

func describeMachine() machine {
	return machine{Info: hostinfo.Describe(), Load: hostinfo.LoadAvg()}
}

func writeFile(path string, b []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o644)
}
