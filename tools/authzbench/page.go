package main

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// table is the plain-text summary printed on standard output.
func (r *results) table() string {
	var b strings.Builder
	fmt.Fprintf(&b, "policy decision, %s, %d decisions per engine interleaved (%d allowed), OPA %s\n",
		r.Workload, r.Decisions, r.Allowed, r.OPAVersion)
	fmt.Fprintf(&b, "%-36s %9s %9s %9s %9s\n", "engine", "p50 µs", "p90 µs", "p99 µs", "mean µs")
	for _, d := range r.Dists {
		fmt.Fprintf(&b, "%-36s %9.1f %9.1f %9.1f %9.1f\n", d.Name, d.P50, d.P90, d.P99, d.Mean)
	}
	fmt.Fprintf(&b, "OPA server ÷ embedded: %.1f× at p50, %.1f× at p99 (goal ≥ %.0f× at p50); full policy without memo ÷ residual: %.1f× at p50\n",
		r.SpeedupP50, r.SpeedupP99, goalSpeedup, r.ResidualGainP50)
	for _, c := range r.Components {
		fmt.Fprintf(&b, "%s:\n", c.What)
		for _, l := range c.Lines {
			fmt.Fprintf(&b, "  %s\n", l)
		}
		if c.Err != "" {
			fmt.Fprintf(&b, "  FAILED: %s\n", c.Err)
		}
	}
	return b.String()
}

// verdict says whether a measured value meets its goal and, if not, by how much it misses.
func verdict(got, goal float64, lowerIsBetter bool) string {
	met := got <= goal
	if !lowerIsBetter {
		met = got >= goal
	}
	if met {
		return "met"
	}
	return fmt.Sprintf("**missed** by %.1f× (%.4g vs %.4g)", math.Max(got/goal, goal/got), got, goal)
}

// writePage writes the results page and its SVG chart (same name, .svg) next to it.
func writePage(path string, r *results) error {
	svgName := strings.TrimSuffix(filepath.Base(path), filepath.Ext(path)) + "-decision.svg"
	if err := writeFile(filepath.Join(filepath.Dir(path), svgName), []byte(chart(r))); err != nil {
		return err
	}
	emb := r.Dists[0]
	var b strings.Builder
	b.WriteString("# Performance\n\n")
	b.WriteString("<!-- Written by tools/authzbench (make bench-authz); edit the tool, not this page. -->\n\n")
	b.WriteString("## Policy decision: embedded engine against an OPA server, side by side\n\n")
	fmt.Fprintf(&b, "One run, %s UTC: %d traffic-shaped decisions for `%s` (customers reading and paying "+
		"with a new resource ID on every request, a few staff, %d%% allowed), each asked of four engines in "+
		"rotating order:\n\n"+
		"1. the embedded engine as services run it: the residual policy, partially evaluated by OPA against "+
		"the service's fixed data at start-up and compiled to Go ([ADR 0980](adr/0980-policy-decision-cost.md)); no memo;\n"+
		"2. the embedded engine evaluating the full policy with OPA, with its exact-input memo (the engine before ADR 0980);\n"+
		"3. the same without the memo;\n"+
		"4. `opa run --server` %s, built from the Go module libs pins, loaded with the same policy and data "+
		"(`Engine.WriteBundle`) and asked over loopback HTTP/1.1 with keep-alive.\n\n"+
		"Every answer of the four agreed on every input (the harness stops otherwise). The OPA request body "+
		"is encoded before the clock starts, so row 4 is server decision plus loopback, not client encoding.\n\n",
		r.When.Format(time.DateTime), r.Decisions, r.Workload, 100*r.Allowed/max(1, r.Decisions), r.OPAVersion)
	b.WriteString("| engine | p50 µs | p90 µs | p99 µs | mean µs |\n|---|---:|---:|---:|---:|\n")
	for _, d := range r.Dists {
		fmt.Fprintf(&b, "| %s | %.1f | %.1f | %.1f | %.1f |\n", d.Name, d.P50, d.P90, d.P99, d.Mean)
	}
	fmt.Fprintf(&b, "\n![decision latency](%s)\n\n", svgName)
	b.WriteString("| goal (issue 14) | measured | |\n|---|---:|---|\n")
	fmt.Fprintf(&b, "| embedded without memo, p50 ≤ %.0f µs | %.1f µs | %s |\n", goalP50.Seconds()*1e6, emb.P50, verdict(emb.P50, goalP50.Seconds()*1e6, true))
	fmt.Fprintf(&b, "| embedded without memo, p99 ≤ %.0f µs | %.1f µs | %s |\n", goalP99.Seconds()*1e6, emb.P99, verdict(emb.P99, goalP99.Seconds()*1e6, true))
	fmt.Fprintf(&b, "| OPA server ÷ embedded at p50 ≥ %.0f× | %.1f× | %s |\n\n", goalSpeedup, r.SpeedupP50, verdict(r.SpeedupP50, goalSpeedup, false))
	fmt.Fprintf(&b, "The residual is %.1f× faster than OPA evaluating the full policy at p50. With per-request "+
		"resource IDs the memo almost never sees an input twice, so row 2 is row 3 plus building the memo "+
		"key: the memo was no answer to per-request latency.\n\n", r.ResidualGainP50)
	b.WriteString("### Where the embedded decision spends its time\n\n")
	fmt.Fprintf(&b, "A separate phase after the interleaved run: the embedded engine as services run it, alone, "+
		"over the same inputs: %.1f allocations and %.0f bytes per decision. The five functions with the "+
		"most CPU time of their own (`go tool pprof -top`; flat, flat%%, sum%%, cum, cum%%):\n\n```\n",
		r.AllocsPerDecision, r.BytesPerDecision)
	for _, l := range r.Profile {
		b.WriteString(l + "\n")
	}
	b.WriteString("```\n\n")
	b.WriteString("The time is the residual evaluator walking what partial evaluation enumerated (the grant " +
		"condition becomes one body per role and permission, each iterating the user's roles); `asyncPreempt` " +
		"is the runtime preempting the loop (scheduler, GC), not policy work. Before ADR 0980 the same profile was OPA's evaluator " +
		"throughout (`topdown.(*eval).evalStep`, `biunify`, rule indexing, ~500 allocations per decision).\n\n")
	if len(r.Components) > 0 {
		b.WriteString("## Connections, credentials, internal JWT (component tests, same run)\n\n" +
			"Measured by the libraries' own tests, run by the harness; not yet under the request-path load " +
			"of issue 14 (see below).\n\n")
		for _, c := range r.Components {
			fmt.Fprintf(&b, "**%s** (`%s`):\n\n```\n", c.What, c.Command)
			for _, l := range c.Lines {
				b.WriteString(l + "\n")
			}
			if c.Err != "" {
				b.WriteString("FAILED: " + c.Err + "\n")
			}
			b.WriteString("```\n\n")
		}
	}
	b.WriteString("### Machine\n\n")
	m := r.Machine
	fmt.Fprintf(&b, "%s, %d cores, %s memory, %s, %s. Load average at the end of the run: %s "+
		"(the machine is shared; compare rows of one run, not runs).\n\n", m.CPU, m.Cores, m.Mem, m.OS, m.Go, m.Load)
	b.WriteString("### Reproduce\n\n```sh\nmake bench-authz        # builds OPA once (.dev/bin/opa), then writes this page\n" +
		"go test -run '^$' -bench DecideLatency ./libs/authz   # p50/p99 per variant incl. the residual policy\n```\n\n")
	b.WriteString("The request path under load (zero trust on and off, per-hop added latency, throughput, CPU, RSS, " +
		"handshakes and JWT-cache hits in the path) is measured by `make bench-path`, in its own section below.\n")
	// make bench-path (tools/pathbench) owns the section between its markers; keep it.
	if old, err := os.ReadFile(path); err == nil {
		if i := strings.Index(string(old), pathBegin); i >= 0 {
			if j := strings.Index(string(old)[i:], pathEnd); j >= 0 {
				b.WriteString("\n" + string(old)[i:i+j+len(pathEnd)] + "\n")
			}
		}
	}
	return writeFile(path, []byte(b.String()))
}

// The markers of tools/pathbench's section of the page.
const (
	pathBegin = "<!-- pathbench:begin"
	pathEnd   = "<!-- pathbench:end -->"
)

// chart draws the three distributions as grouped horizontal bars (p50, p90, p99) on a
// logarithmic microsecond axis, with the p50 and p99 goals as dashed lines.
func chart(r *results) string {
	const (
		w, left, right, top, rowH, barH = 760, 250, 30, 40, 70, 16
	)
	h := top + rowH*len(r.Dists) + 50
	lo, hi := 1.0, 10.0
	for _, d := range r.Dists {
		hi = math.Max(hi, d.P99)
	}
	hi = math.Pow(10, math.Ceil(math.Log10(hi)))
	x := func(us float64) float64 {
		us = math.Max(us, lo)
		return left + (w-left-right)*math.Log10(us/lo)/math.Log10(hi/lo)
	}
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="12">`+"\n", w, h)
	fmt.Fprintf(&b, `<text x="%d" y="20" font-size="14">Policy decision latency, µs (log scale), %s, %d decisions each</text>`+"\n", left-240, r.Workload, r.Decisions)
	for dec := lo; dec <= hi; dec *= 10 {
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#ccc"/><text x="%.1f" y="%d" text-anchor="middle">%g</text>`+"\n",
			x(dec), top-5, x(dec), h-40, x(dec), h-25, dec)
	}
	for _, g := range []struct {
		us    float64
		label string
	}{{goalP50.Seconds() * 1e6, "p50 goal"}, {goalP99.Seconds() * 1e6, "p99 goal"}} {
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#c00" stroke-dasharray="4 3"/><text x="%.1f" y="%d" fill="#c00" text-anchor="middle">%s</text>`+"\n",
			x(g.us), top-5, x(g.us), h-40, x(g.us), h-10, g.label)
	}
	colours := []string{"#2f5f99", "#6b9bd1", "#b7d0ec"}
	for i, d := range r.Dists {
		y := top + i*rowH
		fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="end">%s</text>`+"\n", left-8, y+rowH/2, d.Name)
		for j, v := range []struct {
			name string
			us   float64
		}{{"p50", d.P50}, {"p90", d.P90}, {"p99", d.P99}} {
			by := y + 6 + j*(barH+2)
			fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%.1f" height="%d" fill="%s"/><text x="%.1f" y="%d">%s %.0f</text>`+"\n",
				left, by, x(v.us)-left, barH, colours[j], x(v.us)+4, by+barH-3, v.name, v.us)
		}
	}
	b.WriteString("</svg>\n")
	return b.String()
}
