package main

import (
	"fmt"
	"math"
	"os"
	"sort"
	"strconv"
	"strings"
)

// The generated section sits between these markers in docs/performance.md; everything
// outside them is left as it is (tools/authzbench keeps the section when it rewrites the
// rest of the page).
const (
	markBegin = "<!-- pathbench:begin (written by tools/pathbench, make bench-path; edit the tool, not this section) -->"
	markEnd   = "<!-- pathbench:end -->"
)

// splice replaces the marked section of page with section, or appends it when the page has
// none. A page with a begin marker and no end marker is an error: guessing where the
// section ends could delete hand-written text.
func splice(page, section string) (string, error) {
	block := markBegin + "\n" + strings.TrimSpace(section) + "\n" + markEnd + "\n"
	i := strings.Index(page, "<!-- pathbench:begin")
	if i < 0 {
		if page != "" && !strings.HasSuffix(page, "\n") {
			page += "\n"
		}
		if page != "" {
			page += "\n"
		}
		return page + block, nil
	}
	j := strings.Index(page[i:], markEnd)
	if j < 0 {
		return "", fmt.Errorf("the page has %q but no %q", "<!-- pathbench:begin", markEnd)
	}
	rest := page[i+j+len(markEnd):]
	rest = strings.TrimPrefix(rest, "\n")
	return page[:i] + block + rest, nil
}

func spliceFile(path, section string) error {
	b, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		return err
	}
	out, err := splice(string(b), section)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return writeFile(path, []byte(out))
}

var pathLabel = map[string]string{"read": "read", "pay": "payment"}

// loadWords says how busy the machine was, from the one-minute load averages the run
// recorded: the harness cannot know what else ran, only how loaded the cores were.
func (r *results) loadWords() string {
	peak := 0.0
	for _, l := range []string{r.LoadStart, r.LoadEnd} {
		if f := strings.Fields(l); len(f) > 0 {
			if v, err := strconv.ParseFloat(f[0], 64); err == nil {
				peak = max(peak, v)
			}
		}
	}
	if r.Machine.Cores > 0 && peak > float64(r.Machine.Cores) {
		return "**heavily loaded by other work**"
	}
	return "shared with other work"
}

// section is the generated Markdown.
func (r *results) section(svg string) string {
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	w("## Request path: zero trust on and off, side by side (make bench-path)\n\n")
	w("One run, %s, on a machine %s (load average %s at the start, %s at the end, on %d cores): absolute figures "+
		"depend on that load, so compare on with off within this run, not with other runs or other machines.\n\n",
		r.When, r.loadWords(), r.LoadStart, r.LoadEnd, r.Machine.Cores)
	w("Two local stacks ran at once, each with its own SPIRE server and agent, PostgreSQL, OIDC provider, edge and the " +
		"services of two tenants, real processes as `make dev` starts them:\n\n")
	w("- **read** path: client → edge → `%s/gateway` → `%s/account` → PostgreSQL (`GET /v1/accounts/{id}`, a customer reading "+
		"their own account): %d zero-trust hops;\n", r.ReadTenant, r.ReadTenant, r.Hops["read"])
	w("- **payment** path: client → edge → `%s/gateway` → `%s/payment` → `%s/ledger` → PostgreSQL (`POST /v1/payments` of one minor "+
		"unit between two customers, alternating direction, a fresh Idempotency-Key each): %d zero-trust hops.\n\n",
		r.PayTenant, r.PayTenant, r.PayTenant, r.Hops["pay"])
	w("**On** is the normal build: every hop is mTLS with SPIFFE IDs, the callee verifies the internal JWT (with its " +
		"verified-token cache), decides with the embedded policy and writes an audit line. **Off** is the same code built with " +
		"the bench-only tag `ztbench_off`: plain HTTP between workloads, the internal JWT read but not verified, no policy " +
		"decision, no audit line; same handlers, same database, same edge (which still checks the user's OIDC token and " +
		"mints the internal JWT), same HTTPS and keep-alive from the client to the edge, same requests. A binary built with " +
		"the tag refuses to start outside this harness and no production build carries it (`tests/benchtag`).\n\n")
	w("Requests alternate read and payment. Each figure is the median of %d rounds of %s per mode, interleaved (on, off, "+
		"then off, on, …). Open loop: requests are sent on a fixed schedule whatever the answers take, and latency counts "+
		"from the scheduled start, so a queue anywhere (the generator included) shows. Closed loop: %d clients each send "+
		"the next request when the last is answered. CPU is the services' and PostgreSQL's user+system time from "+
		"/proc over the window, divided by the requests.\n\n", r.Rounds, r.Window, r.Workers)

	w("### Goals (issue 14)\n\n| goal | target | measured | |\n|---|---:|---:|---|\n")
	for _, g := range r.Goals {
		w("| %s | %s | %s | %s |\n", g.What, g.Goal, g.Measured, g.Verdict)
	}
	r.missedNote(&b)
	w("\n### Latency at fixed offered rates\n\n")
	w("| offered req/s | path | on p50 / p90 / p99 ms | off p50 / p90 / p99 ms | added per hop p50 / p90 / p99 ms | answered req/s on / off | failed on / off | CPU µs/req on / off |\n")
	w("|---:|---|---:|---:|---:|---:|---:|---:|\n")
	for _, rr := range r.Rates {
		for _, path := range sortedKeys(rr.Dist["on"]) {
			on, off, h := rr.Dist["on"][path], rr.Dist["off"][path], rr.PerHop[path]
			w("| %.0f | %s | %.2f / %.2f / %.2f | %.2f / %.2f / %.2f | %+.3f / %+.3f / %+.3f | %.0f / %.0f | %d / %d | %.0f / %.0f |\n",
				rr.Rate, pathLabel[path], on.P50, on.P90, on.P99, off.P50, off.P90, off.P99, h["p50"], h["p90"], h["p99"],
				rr.Achieved["on"], rr.Achieved["off"], rr.Failed["on"]+rr.Dropped["on"], rr.Failed["off"]+rr.Dropped["off"],
				rr.CPUPerReq["on"], rr.CPUPerReq["off"])
		}
	}
	w("\nAnswered and CPU columns count both paths together. Failed counts errors, non-2xx answers and requests the open "+
		"loop dropped because %d were outstanding. In the whole run (warm-up, closed loop and profile included) the ledger "+
		"answered %d payments on and %d off with 503 (type contention, Retry-After) because a serializable transaction ran out of retries: every payment "+
		"debits the same account, and concurrent ones conflict in the database, zero trust or not.\n\n",
		r.MaxInFlight, r.RetriesExhausted["on"], r.RetriesExhausted["off"])
	w("![request-path latency, zero trust on and off](%s)\n\n", svg)

	w("### Peak throughput (closed loop, %d clients)\n\n", r.Workers)
	w("| | on | off | on ÷ off |\n|---|---:|---:|---:|\n")
	w("| answered req/s (median of %d rounds) | %.0f | %.0f | %.2f |\n", r.Rounds, r.PeakOn, r.PeakOff, r.PeakRatio)
	w("| CPU µs per request | %.0f | %.0f | %.2f |\n", r.ClosedCPU["on"], r.ClosedCPU["off"], ratio(r.ClosedCPU["on"], r.ClosedCPU["off"]))
	for _, path := range sortedKeys(r.ClosedDist["on"]) {
		on, off := r.ClosedDist["on"][path], r.ClosedDist["off"][path]
		w("| %s p50 / p99 ms | %.1f / %.1f | %.1f / %.1f | |\n", pathLabel[path], on.P50, on.P99, off.P50, off.P99)
	}

	if len(r.ClosedByProc) > 0 {
		w("\nCPU per request by process in the closed loop (µs, median of the rounds; both paths together, so a process on one path only carries its share):\n\n")
		w("| process | on | off | on − off |\n|---|---:|---:|---:|\n")
		for _, proc := range sortedKeys(r.ClosedByProc) {
			c := r.ClosedByProc[proc]
			w("| %s | %.0f | %.0f | %+.0f |\n", proc, c["on"], c["off"], c["on"]-c["off"])
		}
	}
	w("\n### Memory at 300 req/s\n\nResident set (VmRSS) of each process at the end of each 300 req/s window, median of the rounds. " +
		"For comparison, a service-mesh sidecar alone is 50–60 MB per pod.\n\n| process | on MB | off MB |\n|---|---:|---:|\n")
	for _, wl := range sortedKeys(r.RSS300) {
		w("| %s | %.1f | %.1f |\n", wl, r.RSS300[wl]["on"], r.RSS300[wl]["off"])
	}
	if len(r.RSS300) == 0 {
		w("| (300 req/s was not among the rates) | | |\n")
	}

	w("\n### Connections and the internal-JWT cache (zero trust on, open-loop windows)\n\n")
	w("- New mTLS handshakes (`ztbank_mtls_handshakes_total`, summed over the services' server side): %.0f in %.0f requests "+
		"of the rounds after the first at each rate below both peaks (steady state), %.2f per 1,000; %.0f in %.0f requests of "+
		"such rounds at rates at or above a peak, where requests queue and the pools open connections for the extra concurrency; "+
		"%.0f in all %.0f open-loop requests (%.2f per 1,000), first rounds included.\n",
		r.Handshakes.Steady, r.Handshakes.SteadyRequests, r.Handshakes.PerThousand, r.Handshakes.Over, r.Handshakes.OverRequests,
		r.Handshakes.All, r.Handshakes.AllRequests, r.Handshakes.PerThousandAll)
	var per []string
	for _, rr := range r.Rates {
		var hs []string
		for _, rd := range rr.Rounds["on"] {
			hs = append(hs, fmt.Sprintf("%.0f", rd.Handshakes))
		}
		per = append(per, fmt.Sprintf("%.0f req/s: %s", rr.Rate, strings.Join(hs, ", ")))
	}
	w("- Handshakes per round, by offered rate: %s.\n", strings.Join(per, "; "))
	w("- Internal-JWT verifications (`ztbank_usertoken_verify_total`, every service that checks the token): %.0f answered by "+
		"the verified-token cache, %.0f signature checks: hit rate **%.2f%%**. The edge re-mints a user's token shortly before "+
		"its 5-minute expiry, and each service checks each new token once.\n\n", r.Cache.Hits, r.Cache.Verified, 100*r.Cache.HitRate)

	r.profileSection(&b)

	w("\n### Machine\n\n%s, %d cores, %s memory, %s, %s; both stacks, the load generator and the other work shared the cores. "+
		"The stacks took %.0f s to build and start; the whole run %.0f s.\n\n", r.Machine.CPU, r.Machine.Cores, r.Machine.Mem,
		r.Machine.OS, r.Machine.Go, r.StartSeconds, r.TotalSeconds)
	w("### Reproduce\n\n```sh\nmake bench-path      # both stacks, the load, this section, %s\n"+
		"go run ./tools/pathbench -h   # rates, window, rounds, workers, profile length\n```\n", svg)
	return b.String()
}

// missedNote says, when a goal is missed, where the extra cost of zero trust lands: the
// CPU per request on and off, the processes whose CPU grew most, and the profile's top
// functions.
func (r *results) missedNote(b *strings.Builder) {
	var missed []string
	for _, g := range r.Goals {
		if strings.HasPrefix(g.Verdict, "**missed**") {
			missed = append(missed, g.What)
		}
	}
	if len(missed) == 0 {
		return
	}
	w := func(format string, args ...any) { fmt.Fprintf(b, format, args...) }
	w("\n**Missed: %s.** ", strings.Join(missed, "; "))
	w("In the closed loop zero trust costs %.0f µs of CPU per request against %.0f µs off (%+.0f µs, %.2f×)",
		r.ClosedCPU["on"], r.ClosedCPU["off"], r.ClosedCPU["on"]-r.ClosedCPU["off"], ratio(r.ClosedCPU["on"], r.ClosedCPU["off"]))
	type inc struct {
		proc string
		d    float64
	}
	var incs []inc
	for proc, c := range r.ClosedByProc {
		incs = append(incs, inc{proc, c["on"] - c["off"]})
	}
	sort.Slice(incs, func(i, j int) bool { return incs[i].d > incs[j].d })
	if len(incs) > 3 {
		incs = incs[:3]
	}
	var parts []string
	for _, x := range incs {
		parts = append(parts, fmt.Sprintf("%s %+.0f µs", x.proc, x.d))
	}
	if len(parts) > 0 {
		w("; the largest increases by process are %s", strings.Join(parts, ", "))
	}
	w(". On %d cores shared with other work, CPU per request is what bounds throughput and, once the cores are busy, queueing "+
		"turns it into latency.", r.Machine.Cores)
	if len(r.Profile.Top) > 0 {
		var fs []string
		for _, t := range r.Profile.Top {
			fs = append(fs, fmt.Sprintf("`%s` (%.0f µs/req)", t.Func, t.FlatUS))
		}
		w(" The profile's functions with the most CPU of their own: %s — system calls (socket reads and writes: every hop "+
			"is a loopback connection, on and off) and the scheduler's wake-ups, not one zero-trust step.", strings.Join(fs, ", "))
	}
	if len(r.Profile.Parts) > 0 {
		var ps []string
		for _, z := range r.Profile.Parts {
			ps = append(ps, fmt.Sprintf("%s %.0f µs", z.What, z.CumUS))
		}
		w(" By cumulative CPU per request over all processes: %s. Each request is decided at every hop and again by "+
			"the handlers' Check on the loaded resource, on cores the other work keeps busy.", strings.Join(ps, "; "))
	}
	w("\n")
}

func (r *results) profileSection(b *strings.Builder) {
	w := func(format string, args ...any) { fmt.Fprintf(b, format, args...) }
	p := r.Profile
	w("### Where the zero-trust-on path spends CPU\n\n")
	if p.Err != "" || len(p.Top) == 0 {
		w("No profile in this run: %s\n", p.Err)
		return
	}
	w("CPU profiles of every process of the on stack (`net/http/pprof`, bench-only tag `ztbench_pprof`) over one closed-loop "+
		"window of %d requests, merged (`go tool pprof -top`). The five functions with the most CPU time of their own, per request:\n\n", p.Requests)
	w("| function | flat µs/req | flat %% | cum µs/req | cum %% |\n|---|---:|---:|---:|---:|\n")
	for _, t := range p.Top {
		w("| `%s` | %.1f | %.1f | %.1f | %.1f |\n", t.Func, t.FlatUS, t.FlatPct, t.CumUS, t.CumPct)
	}
	if len(p.Parts) > 0 {
		w("\nThe zero-trust steps in the same profile, cumulative (a function and everything it calls), per request over all processes:\n\n")
		w("| step | function | cum µs/req | cum %% |\n|---|---|---:|---:|\n")
		for _, z := range p.Parts {
			w("| %s | `%s` | %.1f | %.1f |\n", z.What, z.Func, z.CumUS, z.CumPct)
		}
	}
	w("\nCPU per request by process over the same window (/proc):\n\n| process | CPU µs/req |\n|---|---:|\n")
	for _, k := range sortedKeys(p.PerService) {
		w("| %s | %.0f |\n", k, p.PerService[k])
	}
}

// chart draws p50 (tick) and p90 (bar top) with p99 as a whisker, on a log scale, per
// rate, path and mode.
func chart(r *results) string {
	const (
		W, H                   = 760, 360
		left, right, top, base = 70, 20, 40, 300
	)
	maxV, minV := 1.0, math.Inf(1)
	for _, rr := range r.Rates {
		for _, m := range rr.Dist {
			for _, d := range m {
				if d.N > 0 {
					maxV, minV = math.Max(maxV, d.P99), math.Min(minV, d.P50)
				}
			}
		}
	}
	if math.IsInf(minV, 1) {
		minV = 0.1
	}
	lo, hi := math.Floor(math.Log10(math.Max(minV, 0.01))), math.Ceil(math.Log10(maxV))
	if hi <= lo {
		hi = lo + 1
	}
	y := func(v float64) float64 {
		v = math.Max(v, math.Pow(10, lo))
		return base - (math.Log10(v)-lo)/(hi-lo)*(base-top)
	}
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="12">`+"\n", W, H)
	fmt.Fprintf(&b, `<text x="%d" y="20" font-size="14">Request-path latency through the edge, zero trust on and off (bar: p90, tick: p50, whisker: p99; log scale)</text>`+"\n", left-50)
	for e := lo; e <= hi; e++ {
		yy := y(math.Pow(10, e))
		fmt.Fprintf(&b, `<line x1="%d" x2="%d" y1="%.1f" y2="%.1f" stroke="#ddd"/><text x="%d" y="%.1f" text-anchor="end">%g ms</text>`+"\n",
			left, W-right, yy, yy, left-6, yy+4, math.Pow(10, e))
	}
	series := []struct{ path, mode, color string }{
		{"read", "on", "#1f77b4"}, {"read", "off", "#aec7e8"}, {"pay", "on", "#d62728"}, {"pay", "off", "#ff9896"},
	}
	n := max(len(r.Rates), 1)
	groupW := float64(W-left-right) / float64(n)
	barW := groupW / float64(len(series)+2)
	for i, rr := range r.Rates {
		x0 := float64(left) + float64(i)*groupW + barW
		for j, s := range series {
			d := rr.Dist[s.mode][s.path]
			if d.N == 0 {
				continue
			}
			x := x0 + float64(j)*barW
			fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"/>`+"\n", x, y(d.P90), barW-2, base-y(d.P90), s.color)
			fmt.Fprintf(&b, `<line x1="%.1f" x2="%.1f" y1="%.1f" y2="%.1f" stroke="#000"/>`+"\n", x, x+barW-2, y(d.P50), y(d.P50))
			cx := x + (barW-2)/2
			fmt.Fprintf(&b, `<line x1="%.1f" x2="%.1f" y1="%.1f" y2="%.1f" stroke="#555"/>`+"\n", cx, cx, y(d.P90), y(d.P99))
		}
		fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="middle">%.0f req/s offered</text>`+"\n", float64(left)+(float64(i)+0.5)*groupW, base+18, rr.Rate)
	}
	for j, s := range series {
		x := left + j*160
		fmt.Fprintf(&b, `<rect x="%d" y="%d" width="12" height="12" fill="%s"/><text x="%d" y="%d">%s, zero trust %s</text>`+"\n",
			x, base+32, s.color, x+16, base+42, pathLabel[s.path], s.mode)
	}
	b.WriteString("</svg>\n")
	return b.String()
}
