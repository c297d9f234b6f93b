// Command pathbench measures the real request path of issue 14 with zero trust on and off
// in one run: it starts two local stacks (SPIRE, PostgreSQL, the OIDC provider, the edge and
// the services of two tenants), one built normally and one built with the bench-only tag
// ztbench_off (plain HTTP between workloads, no internal-JWT verification, no policy, no
// audit; same handlers, same database), and drives both through their public edges with the
// same requests, interleaved: an open loop at fixed offered rates and a closed loop for peak
// throughput. It reports latency percentiles, throughput, CPU per request, RSS, mTLS
// handshakes per 1,000 requests, the internal-JWT cache hit rate and a CPU profile of the hot
// path, and writes them into docs/performance.md between markers (make bench-path).
//
//	go run ./tools/pathbench -md docs/performance.md -json .dev/bench/path.json
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/ztbank/ztbank/devkit/localspire"
	"github.com/ztbank/ztbank/libs/cli"
	"github.com/ztbank/ztbank/libs/topology"
	"github.com/ztbank/ztbank/tools/internal/hostinfo"
)

func main() { cli.Main("pathbench", run) }

// config is the run's shape, from flags.
type config struct {
	Rates     []float64     // fixed offered rates; the peak-derived one is added
	Window    time.Duration // one measured window of one mode
	Rounds    int           // interleaved on/off rounds per rate and for the closed loop
	Workers   int           // closed-loop clients
	Warmup    time.Duration
	Profile   time.Duration
	TopFrac   float64 // the highest rate is this fraction of the smaller peak
	MaxFlight int64
	State     string
	PprofDir  string
	MD, SVG   string
	JSON      string
	Report    string // render the page from these saved results instead of measuring
}

func parseFlags(args []string, stderr io.Writer) (config, error) {
	fs := flag.NewFlagSet("pathbench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	rates := fs.String("rates", "100,300", "fixed offered rates (requests/s, comma-separated); a higher one derived from the measured peak is added")
	c := config{}
	fs.DurationVar(&c.Window, "window", 6*time.Second, "length of one measured window (one mode at one rate)")
	fs.IntVar(&c.Rounds, "rounds", 5, "interleaved on/off rounds per rate and for the closed loop; the report gives medians")
	fs.IntVar(&c.Workers, "workers", 24, "closed-loop clients")
	fs.DurationVar(&c.Warmup, "warmup", 4*time.Second, "closed-loop warm-up per mode before measuring")
	fs.DurationVar(&c.Profile, "profile", 8*time.Second, "CPU profile of the zero-trust-on hot path (0: none)")
	fs.Float64Var(&c.TopFrac, "top", 0.6, "the highest offered rate as a fraction of the smaller closed-loop peak")
	fs.Int64Var(&c.MaxFlight, "max-in-flight", 2000, "open loop: requests outstanding at most; more are dropped and counted")
	fs.StringVar(&c.State, "state", "", "directory for the two stacks (default: a temporary directory)")
	fs.StringVar(&c.PprofDir, "pprof-dir", "", "keep the CPU profiles here (default: discarded)")
	fs.StringVar(&c.MD, "md", "", "results page to write the generated section into (between its markers)")
	fs.StringVar(&c.SVG, "svg", "", "latency chart (default: next to -md, performance-path.svg)")
	fs.StringVar(&c.JSON, "json", "", "write the raw results here")
	fs.StringVar(&c.Report, "report", "", "re-render -md and its chart from a saved -json file instead of measuring")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	for _, s := range strings.Split(*rates, ",") {
		r, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
		if err != nil || r <= 0 {
			return c, fmt.Errorf("-rates: %q is not a positive rate", s)
		}
		c.Rates = append(c.Rates, r)
	}
	if c.Rounds < 1 || c.Workers < 1 || c.Window <= 0 {
		return c, errors.New("-rounds, -workers and -window must be positive")
	}
	if c.SVG == "" && c.MD != "" {
		c.SVG = filepath.Join(filepath.Dir(c.MD), "performance-path.svg")
	}
	return c, nil
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	cfg, err := parseFlags(args[1:], stderr)
	if err != nil {
		return err
	}
	if cfg.Report != "" {
		b, err := os.ReadFile(cfg.Report)
		if err != nil {
			return err
		}
		var res results
		if err := json.Unmarshal(b, &res); err != nil {
			return fmt.Errorf("%s: %w", cfg.Report, err)
		}
		return write(cfg, &res, stdout)
	}
	root, err := localspire.RepoRoot()
	if err != nil {
		return err
	}
	state := cfg.State
	if state == "" {
		if state, err = os.MkdirTemp("", "pathbench"); err != nil {
			return err
		}
		defer os.RemoveAll(state)
	}
	p, err := choosePaths(topology.Default())
	if err != nil {
		return err
	}
	started := time.Now()
	res := &results{When: started.UTC().Format("2006-01-02 15:04 UTC"), LoadStart: hostinfo.LoadAvg(),
		Hops: map[string]int{"read": 2, "pay": 3}, ReadTenant: p.ReadTenant, PayTenant: p.PayTenant,
		Window: cfg.Window.String(), Rounds: cfg.Rounds, Workers: cfg.Workers, MaxInFlight: cfg.MaxFlight}
	// One stack at a time: two cold builds and two SPIRE start-ups at once only slow each
	// other on two cores.
	modes := map[string]*mode{}
	for _, name := range []string{"on", "off"} {
		// A stack starts from nothing: SPIRE's datastore or a database of an earlier run
		// would make this run depend on history.
		if err := os.RemoveAll(filepath.Join(state, name)); err != nil {
			return err
		}
		m, err := startMode(ctx, root, filepath.Join(state, name), name, p, stderr)
		if err != nil {
			return err
		}
		defer m.st.Stop()
		modes[name] = m
	}
	res.StartSeconds = time.Since(started).Seconds()
	fmt.Fprintf(stderr, "==> both stacks ready after %.0fs\n", res.StartSeconds)
	b := &bench{cfg: cfg, modes: modes, res: res, stderr: stderr}
	if err := b.measure(ctx); err != nil {
		return err
	}
	res.RetriesExhausted = map[string]int{"on": modes["on"].retriesExhausted(), "off": modes["off"].retriesExhausted()}
	res.LoadEnd = hostinfo.LoadAvg()
	res.Machine = hostinfo.Describe()
	res.TotalSeconds = time.Since(started).Seconds()
	res.derive()
	fmt.Fprint(stdout, res.table())
	if cfg.JSON != "" {
		jb, _ := json.MarshalIndent(res, "", "  ")
		if err := writeFile(cfg.JSON, append(jb, '\n')); err != nil {
			return err
		}
	}
	return write(cfg, res, stdout)
}

// write puts the results into the page and the chart.
func write(cfg config, res *results, stdout io.Writer) error {
	if cfg.MD != "" {
		if err := writeFile(cfg.SVG, []byte(chart(res))); err != nil {
			return err
		}
		rel, _ := filepath.Rel(filepath.Dir(cfg.MD), cfg.SVG)
		if err := spliceFile(cfg.MD, res.section(filepath.ToSlash(rel))); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "wrote %s and %s\n", cfg.MD, cfg.SVG)
	}
	return nil
}

// bench runs the measured phases against both modes.
type bench struct {
	cfg    config
	modes  map[string]*mode
	res    *results
	seq    atomic.Int64
	stderr io.Writer
}

// order is the interleaving of round i: on, off, on, off… starting with the other mode
// every second round, so neither always runs right after the machine was idle.
func order(i int) []string {
	if i%2 == 1 {
		return []string{"off", "on"}
	}
	return []string{"on", "off"}
}

func (b *bench) refresh(ctx context.Context) error {
	for _, m := range b.modes {
		if err := m.logins.refresh(ctx, m.logins.users); err != nil {
			return err
		}
	}
	return nil
}

// window is one mode's measured run with the process counters around it.
type window struct {
	res        *result
	cpu        float64 // CPU seconds of the services and PostgreSQL
	handshakes float64
	hits, ver  float64
	rss        map[string]float64
	perProc    map[string]float64 // CPU seconds by process ("postgresql": all of it)
}

const (
	metricHandshakes = "ztbank_mtls_handshakes_total"
	metricVerify     = "ztbank_usertoken_verify_total"
)

func (b *bench) window(ctx context.Context, m *mode, load func() *result, withRSS bool) window {
	svc, pg := m.pids()
	all := slices.Concat(slices.Collect(mapValues(svc)), pg)
	before := m.scrape(ctx, metricHandshakes, metricVerify)
	cpu0, proc0 := cpuSeconds(all), procCPU(svc, pg)
	r := load()
	cpu1, proc1 := cpuSeconds(all), procCPU(svc, pg)
	after := m.scrape(ctx, metricHandshakes, metricVerify)
	w := window{res: r, cpu: cpu1 - cpu0,
		handshakes: after[metricHandshakes] - before[metricHandshakes],
		hits:       after[metricVerify+`{result="cache_hit"}`] - before[metricVerify+`{result="cache_hit"}`],
		ver:        after[metricVerify+`{result="verified"}`] - before[metricVerify+`{result="verified"}`],
		perProc:    map[string]float64{}}
	for k, v := range proc1 {
		w.perProc[k] = v - proc0[k]
	}
	if withRSS {
		w.rss = map[string]float64{}
		for name, pid := range svc {
			w.rss[name] = rssMB(pid)
		}
		var pgRSS float64
		for _, pid := range pg {
			pgRSS += rssMB(pid)
		}
		w.rss["postgresql"] = pgRSS
	}
	return w
}

// procCPU is each service's CPU seconds so far, and PostgreSQL's (all its processes).
func procCPU(svc map[string]int, pg []int) map[string]float64 {
	out := map[string]float64{"postgresql": cpuSeconds(pg)}
	for name, pid := range svc {
		out[name] = cpuSeconds([]int{pid})
	}
	return out
}

func mapValues(m map[string]int) func(func(int) bool) {
	return func(yield func(int) bool) {
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			if !yield(m[k]) {
				return
			}
		}
	}
}

func (b *bench) measure(ctx context.Context) error {
	cfg := b.cfg
	if err := b.refresh(ctx); err != nil {
		return err
	}
	// Warm-up: connection pools, the edge's token-exchange cache, the services' verified-
	// token caches and the database's buffers fill before anything is measured.
	for _, name := range []string{"on", "off"} {
		fmt.Fprintf(b.stderr, "==> warm-up %s (%s closed loop)\n", name, cfg.Warmup)
		b.modes[name].tgt.closedLoop(ctx, cfg.Workers, cfg.Warmup, &b.seq)
	}
	// Closed loop first: its peak sets the highest open-loop rate.
	peaks := map[string][]float64{}
	for i := range cfg.Rounds {
		if err := b.refresh(ctx); err != nil {
			return err
		}
		for _, name := range order(i) {
			m := b.modes[name]
			w := b.window(ctx, m, func() *result { return m.tgt.closedLoop(ctx, cfg.Workers, cfg.Window, &b.seq) }, false)
			tput := float64(w.res.OK) / w.res.Elapsed.Seconds()
			peaks[name] = append(peaks[name], tput)
			b.res.addClosed(name, w)
			fmt.Fprintf(b.stderr, "==> closed loop %s round %d: %.0f req/s, %d failed\n", name, i+1, tput, w.res.Failed)
		}
	}
	b.res.PeakOn, b.res.PeakOff = median(peaks["on"]), median(peaks["off"])
	rates := slices.Clone(cfg.Rates)
	if top := math.Floor(cfg.TopFrac*min(b.res.PeakOn, b.res.PeakOff)/10) * 10; top > 0 && !slices.Contains(rates, top) {
		rates = append(rates, top)
	}
	slices.Sort(rates)
	for _, rate := range rates {
		for i := range cfg.Rounds {
			if err := b.refresh(ctx); err != nil {
				return err
			}
			for _, name := range order(i) {
				m := b.modes[name]
				w := b.window(ctx, m, func() *result {
					return m.tgt.openLoop(ctx, rate, cfg.Window, cfg.MaxFlight, &b.seq)
				}, rate == 300)
				b.res.addOpen(rate, name, i, w)
				r := w.res
				fmt.Fprintf(b.stderr, "==> %4.0f req/s %-3s round %d: read p90 %.2f ms, pay p90 %.2f ms, %d ok, %d failed, %d dropped\n",
					rate, name, i+1, summarise(r.Latency["read"]).P90, summarise(r.Latency["pay"]).P90, r.OK, r.Failed, r.Dropped)
			}
		}
	}
	if cfg.Profile > 0 {
		if err := b.refresh(ctx); err != nil {
			return err
		}
		prof, err := b.profile(ctx, b.modes["on"])
		if err != nil {
			fmt.Fprintf(b.stderr, "==> profile: %v\n", err)
			b.res.Profile.Err = err.Error()
		} else {
			b.res.Profile = prof
		}
	}
	return nil
}

func writeFile(path string, b []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o644)
}
