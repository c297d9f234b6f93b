package main

import (
	"fmt"
	"sort"
	"strings"

	"github.com/ztbank/ztbank/tools/internal/hostinfo"
)

// The goals of issue 14 this harness reports against.
const (
	goalPerHopP90MS = 0.11 // added latency of one zero-trust hop at p90, ms (half Istio's sidecar pair)
	goalPeakRatio   = 0.75 // throughput on ÷ off at peak
	goalHandshakes  = 0.0  // new TLS handshakes per 1,000 steady-state requests
)

// round is one mode's measured window.
type round struct {
	Dist       map[string]dist    `json:"latency"`
	OK         int64              `json:"ok"`
	Failed     int64              `json:"failed"`
	Dropped    int64              `json:"dropped"`
	Status     map[string]int     `json:"failures,omitempty"`
	Seconds    float64            `json:"seconds"`
	CPU        float64            `json:"cpu_seconds"`
	Handshakes float64            `json:"handshakes"`
	CacheHits  float64            `json:"jwt_cache_hits"`
	Verified   float64            `json:"jwt_verified"`
	RSS        map[string]float64 `json:"rss_mb,omitempty"`
	ProcCPU    map[string]float64 `json:"cpu_seconds_by_process,omitempty"`
}

func newRound(w window) round {
	r := w.res
	rd := round{Dist: map[string]dist{}, OK: r.OK, Failed: r.Failed, Dropped: r.Dropped, Status: r.Status,
		Seconds: r.Elapsed.Seconds(), CPU: w.cpu, Handshakes: w.handshakes, CacheHits: w.hits, Verified: w.ver, RSS: w.rss, ProcCPU: w.perProc}
	for path, ds := range r.Latency {
		rd.Dist[path] = summarise(ds)
	}
	return rd
}

func (r round) requests() float64 { return float64(r.OK + r.Failed) }

// rateResult is one offered rate: the rounds of both modes and what they amount to.
type rateResult struct {
	Rate   float64            `json:"offered_per_second"`
	Rounds map[string][]round `json:"rounds"`
	// Derived (medians over rounds).
	Dist      map[string]map[string]dist `json:"median_latency"`     // mode → path
	Achieved  map[string]float64         `json:"achieved"`           // mode → answered/s
	CPUPerReq map[string]float64         `json:"cpu_us_per_request"` // mode → µs of CPU
	Failed    map[string]int64           `json:"failed"`
	Dropped   map[string]int64           `json:"dropped"`
	// PerHop is the added latency of one zero-trust hop, ms: path → "p50"/"p90"/"p99".
	PerHop map[string]map[string]float64 `json:"added_ms_per_hop"`
}

// results is everything one run measured.
type results struct {
	When         string                        `json:"when"`
	Machine      hostinfo.Info                 `json:"machine"`
	LoadStart    string                        `json:"loadavg_start"`
	LoadEnd      string                        `json:"loadavg_end"`
	ReadTenant   string                        `json:"read_tenant"`
	PayTenant    string                        `json:"pay_tenant"`
	Hops         map[string]int                `json:"zero_trust_hops"`
	Window       string                        `json:"window"`
	Rounds       int                           `json:"rounds"`
	MaxInFlight  int64                         `json:"max_in_flight"`
	Workers      int                           `json:"closed_loop_workers"`
	StartSeconds float64                       `json:"stack_start_seconds"`
	TotalSeconds float64                       `json:"total_seconds"`
	Closed       map[string][]round            `json:"closed_loop_rounds"`
	PeakOn       float64                       `json:"peak_on"`
	PeakOff      float64                       `json:"peak_off"`
	PeakRatio    float64                       `json:"peak_ratio"`
	ClosedCPU    map[string]float64            `json:"closed_loop_cpu_us_per_request"`
	ClosedDist   map[string]map[string]dist    `json:"closed_loop_latency"`
	ClosedByProc map[string]map[string]float64 `json:"closed_loop_cpu_us_per_request_by_process"` // process → mode
	Rates        []*rateResult                 `json:"rates"`
	RSS300       map[string]map[string]float64 `json:"rss_mb_at_300"` // workload → mode → MB
	Handshakes   handshakes                    `json:"handshakes_on"`
	Cache        cacheStats                    `json:"jwt_cache_on"`
	Profile      profile                       `json:"profile_on"`
	// RetriesExhausted counts, per mode, requests the ledger refused (503 contention) because a
	// serializable transaction ran out of retries: concurrent payments from one account.
	RetriesExhausted map[string]int `json:"db_retries_exhausted"`
	Goals            []goal         `json:"goals"`
}

type handshakes struct {
	All, AllRequests       float64 // every open-loop window of the on stack
	Steady, SteadyRequests float64 // rounds after the first at each rate below both peaks
	Over, OverRequests     float64 // the same rounds at rates at or above a peak
	PerThousand            float64 `json:"per_1000_steady"`
	PerThousandAll         float64 `json:"per_1000_all"`
}

type cacheStats struct {
	Hits, Verified float64
	HitRate        float64 `json:"hit_rate"`
}

type goal struct {
	What     string `json:"what"`
	Goal     string `json:"goal"`
	Measured string `json:"measured"`
	Verdict  string `json:"verdict"`
}

func (r *results) addClosed(mode string, w window) {
	if r.Closed == nil {
		r.Closed = map[string][]round{}
	}
	r.Closed[mode] = append(r.Closed[mode], newRound(w))
}

func (r *results) addOpen(rate float64, mode string, _ int, w window) {
	var rr *rateResult
	for _, x := range r.Rates {
		if x.Rate == rate {
			rr = x
		}
	}
	if rr == nil {
		rr = &rateResult{Rate: rate, Rounds: map[string][]round{}}
		r.Rates = append(r.Rates, rr)
	}
	rr.Rounds[mode] = append(rr.Rounds[mode], newRound(w))
}

// derive computes the medians, ratios and verdicts from the rounds.
func (r *results) derive() {
	r.PeakRatio = ratio(r.PeakOn, r.PeakOff)
	r.ClosedCPU, r.ClosedDist = map[string]float64{}, map[string]map[string]dist{}
	r.ClosedByProc = map[string]map[string]float64{}
	for mode, rounds := range r.Closed {
		r.ClosedCPU[mode] = cpuPerRequest(rounds)
		r.ClosedDist[mode] = medianDists(rounds)
		per := map[string][]float64{}
		for _, rd := range rounds {
			for proc, sec := range rd.ProcCPU {
				if n := rd.requests(); n > 0 {
					per[proc] = append(per[proc], 1e6*sec/n)
				}
			}
		}
		for proc, xs := range per {
			if r.ClosedByProc[proc] == nil {
				r.ClosedByProc[proc] = map[string]float64{}
			}
			r.ClosedByProc[proc][mode] = median(xs)
		}
	}
	r.RSS300 = map[string]map[string]float64{}
	r.Handshakes, r.Cache = handshakes{}, cacheStats{}
	for _, rr := range r.Rates {
		rr.Dist, rr.Achieved, rr.CPUPerReq = map[string]map[string]dist{}, map[string]float64{}, map[string]float64{}
		rr.Failed, rr.Dropped = map[string]int64{}, map[string]int64{}
		for mode, rounds := range rr.Rounds {
			rr.Dist[mode] = medianDists(rounds)
			rr.CPUPerReq[mode] = cpuPerRequest(rounds)
			var got []float64
			for i, rd := range rounds {
				got = append(got, float64(rd.OK)/max(rd.Seconds, 1e-9))
				rr.Failed[mode] += rd.Failed
				rr.Dropped[mode] += rd.Dropped
				if mode == "on" {
					r.Handshakes.All += rd.Handshakes
					r.Handshakes.AllRequests += rd.requests()
					switch {
					case i == 0:
					case rr.Rate < min(r.PeakOn, r.PeakOff):
						r.Handshakes.Steady += rd.Handshakes
						r.Handshakes.SteadyRequests += rd.requests()
					default:
						r.Handshakes.Over += rd.Handshakes
						r.Handshakes.OverRequests += rd.requests()
					}
					r.Cache.Hits += rd.CacheHits
					r.Cache.Verified += rd.Verified
				}
				for wl, mb := range rd.RSS {
					if r.RSS300[wl] == nil {
						r.RSS300[wl] = map[string]float64{}
					}
					r.RSS300[wl][mode+"#"+fmt.Sprint(i)] = mb
				}
			}
			rr.Achieved[mode] = median(got)
		}
		rr.PerHop = map[string]map[string]float64{}
		for path, hops := range r.Hops {
			on, off := rr.Dist["on"][path], rr.Dist["off"][path]
			if on.N == 0 || off.N == 0 {
				continue
			}
			rr.PerHop[path] = map[string]float64{"p50": perHop(on.P50, off.P50, hops),
				"p90": perHop(on.P90, off.P90, hops), "p99": perHop(on.P99, off.P99, hops)}
		}
	}
	// RSS: the median over rounds of each mode.
	for wl, byRound := range r.RSS300 {
		per := map[string][]float64{}
		for k, mb := range byRound {
			mode, _, _ := strings.Cut(k, "#")
			per[mode] = append(per[mode], mb)
		}
		r.RSS300[wl] = map[string]float64{"on": median(per["on"]), "off": median(per["off"])}
	}
	r.Handshakes.PerThousand = perThousand(r.Handshakes.Steady, r.Handshakes.SteadyRequests)
	r.Handshakes.PerThousandAll = perThousand(r.Handshakes.All, r.Handshakes.AllRequests)
	r.Cache.HitRate = ratio(r.Cache.Hits, r.Cache.Hits+r.Cache.Verified)
	r.Goals = r.goals()
}

func medianDists(rounds []round) map[string]dist {
	by := map[string][]dist{}
	for _, rd := range rounds {
		for path, d := range rd.Dist {
			by[path] = append(by[path], d)
		}
	}
	out := map[string]dist{}
	for path, ds := range by {
		out[path] = medianDist(ds)
	}
	return out
}

// cpuPerRequest is the median over rounds of CPU µs per request answered or failed.
func cpuPerRequest(rounds []round) float64 {
	var xs []float64
	for _, rd := range rounds {
		if n := rd.requests(); n > 0 {
			xs = append(xs, 1e6*rd.CPU/n)
		}
	}
	return median(xs)
}

// goalRate is the offered rate the latency goal is judged at: the lowest, where the
// machine's other work causes the least queueing (the page shows every rate).
func (r *results) goalRate() *rateResult {
	var best *rateResult
	for _, rr := range r.Rates {
		if best == nil || rr.Rate < best.Rate {
			best = rr
		}
	}
	return best
}

func (r *results) goals() []goal {
	var gs []goal
	if rr := r.goalRate(); rr != nil {
		for _, path := range sortedKeys(rr.PerHop) {
			v := rr.PerHop[path]["p90"]
			gs = append(gs, goal{What: fmt.Sprintf("added latency per zero-trust hop at p90, %s path (%d hops), %.0f req/s", path, r.Hops[path], rr.Rate),
				Goal: fmt.Sprintf("≤ %.2f ms", goalPerHopP90MS), Measured: fmt.Sprintf("%.3f ms (p50 %.3f ms)", v, rr.PerHop[path]["p50"]), Verdict: latencyVerdict(v)})
		}
	}
	gs = append(gs, goal{What: "throughput on ÷ off at peak (closed loop)", Goal: fmt.Sprintf("≥ %.2f", goalPeakRatio),
		Measured: fmt.Sprintf("%.2f (%.0f ÷ %.0f req/s)", r.PeakRatio, r.PeakOn, r.PeakOff), Verdict: verdict(r.PeakRatio, goalPeakRatio, false)})
	gs = append(gs, goal{What: "new mTLS handshakes per 1,000 steady-state requests", Goal: "0",
		Measured: fmt.Sprintf("%.2f (%.0f in %.0f requests at rates below the peak; above it %.2f, %.0f in %.0f)", r.Handshakes.PerThousand,
			r.Handshakes.Steady, r.Handshakes.SteadyRequests, perThousand(r.Handshakes.Over, r.Handshakes.OverRequests), r.Handshakes.Over, r.Handshakes.OverRequests),
		Verdict: verdict(r.Handshakes.PerThousand, goalHandshakes, true)})
	return gs
}

// latencyVerdict judges an added latency per hop. Zero trust cannot make a hop faster, so
// a negative difference is the machine's noise exceeding the difference, not a goal met.
func latencyVerdict(v float64) string {
	if v < 0 {
		return "not resolved: off measured slower than on in this run, noise exceeds the difference"
	}
	return verdict(v, goalPerHopP90MS, true)
}

// verdict says whether got meets goal and, if not, by how much it misses.
func verdict(got, goal float64, lowerIsBetter bool) string {
	if lowerIsBetter && got <= goal || !lowerIsBetter && got >= goal {
		return "met"
	}
	if goal == 0 {
		return fmt.Sprintf("**missed** by %.4g", got)
	}
	if lowerIsBetter {
		return fmt.Sprintf("**missed** by %.3g (%.1f× the goal)", got-goal, got/goal)
	}
	return fmt.Sprintf("**missed** by %.3g (%.0f%% of the goal)", goal-got, 100*got/goal)
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	// "read" before "pay": the shorter path first.
	sort.Slice(keys, func(i, j int) bool {
		if (keys[i] == "read") != (keys[j] == "read") {
			return keys[i] == "read"
		}
		return keys[i] < keys[j]
	})
	return keys
}

// table is the plain-text summary printed on standard output.
func (r *results) table() string {
	var b strings.Builder
	fmt.Fprintf(&b, "request path, zero trust on and off, %s (load %s → %s)\n", r.When, r.LoadStart, r.LoadEnd)
	fmt.Fprintf(&b, "%-8s %-5s %-4s %9s %9s %9s %9s %10s\n", "offered", "path", "mode", "p50 ms", "p90 ms", "p99 ms", "answered", "CPU µs/req")
	for _, rr := range r.Rates {
		for _, path := range sortedKeys(rr.Dist["on"]) {
			for _, mode := range []string{"on", "off"} {
				d := rr.Dist[mode][path]
				fmt.Fprintf(&b, "%-8.0f %-5s %-4s %9.2f %9.2f %9.2f %9.0f %10.0f\n", rr.Rate, path, mode, d.P50, d.P90, d.P99, rr.Achieved[mode], rr.CPUPerReq[mode])
			}
		}
	}
	fmt.Fprintf(&b, "peak: on %.0f req/s, off %.0f req/s, ratio %.2f\n", r.PeakOn, r.PeakOff, r.PeakRatio)
	fmt.Fprintf(&b, "handshakes per 1,000 steady-state requests (on): %.2f; JWT cache hit rate %.4f\n", r.Handshakes.PerThousand, r.Cache.HitRate)
	for _, g := range r.Goals {
		fmt.Fprintf(&b, "goal: %s %s: %s — %s\n", g.What, g.Goal, g.Measured, g.Verdict)
	}
	return b.String()
}
