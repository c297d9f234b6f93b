package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestSplice(t *testing.T) {
	block := markBegin + "\nnew\n" + markEnd + "\n"
	for _, tc := range []struct {
		name, page, want string
		wantErr          bool
	}{
		{name: "empty page", page: "", want: block},
		{name: "appended after text", page: "# Performance\n\ntext", want: "# Performance\n\ntext\n\n" + block},
		{name: "replaced in place", page: "head\n\n" + markBegin + "\nold\nlines\n" + markEnd + "\ntail\n",
			want: "head\n\n" + block + "tail\n"},
		{name: "older begin marker text", page: "<!-- pathbench:begin something else -->\nold\n" + markEnd + "\n", want: block},
		{name: "no end marker", page: markBegin + "\nold\n", wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := splice(tc.page, "new")
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, want error %v", err, tc.wantErr)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("splice (-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseTop(t *testing.T) {
	out := `File: edge
Type: cpu
Showing nodes accounting for 2.50s, 50.00% of 5s total
Dropped 300 nodes (cum <= 0.03s)
      flat  flat%   sum%        cum   cum%
     1.20s 24.00% 24.00%      1.50s 30.00%  runtime/internal/syscall.Syscall6
     500ms 10.00% 34.00%        2s 40.00%  crypto/internal/fips140/aes/gcm.(*GCM).Seal
     0     0%     34.00%      100ms  2.00%  main.main
`
	got := parseTop(out, 1000, 2)
	want := []topLine{
		{Func: "runtime/internal/syscall.Syscall6", FlatUS: 1200, FlatPct: 24, CumUS: 1500, CumPct: 30, FlatDuration: "1.20s"},
		{Func: "crypto/internal/fips140/aes/gcm.(*GCM).Seal", FlatUS: 500, FlatPct: 10, CumUS: 2000, CumPct: 40, FlatDuration: "500ms"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("parseTop (-want +got):\n%s", diff)
	}
}

func TestParseMetrics(t *testing.T) {
	text := `# HELP ztbank_mtls_handshakes_total x
# TYPE ztbank_mtls_handshakes_total counter
ztbank_mtls_handshakes_total{resumed="false"} 3
ztbank_mtls_handshakes_total{resumed="true"} 2
ztbank_usertoken_verify_total{result="cache_hit"} 1e+06
other_total 9
`
	got := parseMetrics(text, []string{"ztbank_mtls_handshakes_total", "ztbank_usertoken_verify_total"})
	want := map[string]float64{
		"ztbank_mtls_handshakes_total":                      5,
		`ztbank_mtls_handshakes_total{resumed="false"}`:     3,
		`ztbank_mtls_handshakes_total{resumed="true"}`:      2,
		"ztbank_usertoken_verify_total":                     1e6,
		`ztbank_usertoken_verify_total{result="cache_hit"}`: 1e6,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("parseMetrics (-want +got):\n%s", diff)
	}
}

func TestParseStat(t *testing.T) {
	// A command name with spaces and a parenthesis, as a process may set it.
	line := "4242 (my (odd) proc) S 17 4242 4242 0 -1 4194560 100 0 0 0 250 31 0 0 20 0 8 0 1000 0 0\n"
	got, err := parseStat(line)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(procStat{ppid: 17, ticks: 281}, got, cmp.AllowUnexported(procStat{})); diff != "" {
		t.Errorf("parseStat (-want +got):\n%s", diff)
	}
	if _, err := parseStat("4242 (x) S 1"); err == nil {
		t.Error("short line accepted")
	}
}

func TestLatencyVerdict(t *testing.T) {
	for v, want := range map[float64]string{0.05: "met", 0.22: "**missed** by 0.11 (2.0× the goal)",
		-0.3: "not resolved: off measured slower than on in this run, noise exceeds the difference"} {
		if got := latencyVerdict(v); got != want {
			t.Errorf("latencyVerdict(%v) = %q, want %q", v, got, want)
		}
	}
}

func TestVerdict(t *testing.T) {
	for _, tc := range []struct {
		got, goal float64
		lower     bool
		want      string
	}{
		{0.1, 0.11, true, "met"},
		{0.22, 0.11, true, "**missed** by 0.11 (2.0× the goal)"},
		{0.8, 0.75, false, "met"},
		{0.6, 0.75, false, "**missed** by 0.15 (80% of the goal)"},
		{0, 0, true, "met"},
		{0.5, 0, true, "**missed** by 0.5"},
	} {
		if got := verdict(tc.got, tc.goal, tc.lower); got != tc.want {
			t.Errorf("verdict(%v, %v, %v) = %q, want %q", tc.got, tc.goal, tc.lower, got, tc.want)
		}
	}
}

// TestDeriveAndSection builds results from hand-made rounds and checks the medians, the
// per-hop figures, the goals and that the page and chart carry them.
func TestDeriveAndSection(t *testing.T) {
	r := &results{Hops: map[string]int{"read": 2, "pay": 3}, Rounds: 2, Window: "6s", Workers: 4}
	mk := func(readP90, payP90, handshakes, hits float64) window {
		res := newResult()
		res.OK, res.Elapsed = 600, 2e9
		res.Latency["read"] = ms(readP90/2, readP90, readP90, readP90, readP90, readP90, readP90, readP90, readP90, readP90*2)
		res.Latency["pay"] = ms(payP90/2, payP90, payP90, payP90, payP90, payP90, payP90, payP90, payP90, payP90*2)
		return window{res: res, cpu: 0.6, handshakes: handshakes, hits: hits, ver: 1, rss: map[string]float64{"edge": 30}}
	}
	r.addOpen(300, "on", 0, mk(2.4, 3.6, 4, 99))
	r.addOpen(300, "off", 0, mk(2.0, 3.0, 0, 0))
	r.addOpen(300, "on", 1, mk(2.6, 3.9, 0, 99))
	r.addOpen(300, "off", 1, mk(2.2, 3.3, 0, 0))
	r.addClosed("on", mk(1, 1, 0, 0))
	r.addClosed("off", mk(1, 1, 0, 0))
	r.PeakOn, r.PeakOff = 375, 500
	r.derive()
	rr := r.Rates[0]
	if got := rr.PerHop["read"]["p90"]; got < 0.199 || got > 0.201 {
		t.Errorf("read added p90 per hop = %v, want 0.2 ((2.5-2.1)/2)", got)
	}
	if got := rr.PerHop["pay"]["p90"]; got < 0.199 || got > 0.201 {
		t.Errorf("pay added p90 per hop = %v, want 0.2 ((3.75-3.15)/3)", got)
	}
	if got := rr.CPUPerReq["on"]; got != 1000 {
		t.Errorf("CPU per request = %v µs, want 1000 (0.6 s over 600)", got)
	}
	if diff := cmp.Diff(handshakes{All: 4, AllRequests: 1200, Steady: 0, SteadyRequests: 600, PerThousand: 0, PerThousandAll: 4000.0 / 1200}, r.Handshakes); diff != "" {
		t.Errorf("handshakes (-want +got):\n%s", diff)
	}
	if r.Cache.HitRate != 0.99 {
		t.Errorf("cache hit rate = %v, want 0.99", r.Cache.HitRate)
	}
	var verdicts []string
	for _, g := range r.Goals {
		verdicts = append(verdicts, g.Verdict)
	}
	want := []string{"**missed** by 0.09 (1.8× the goal)", "**missed** by 0.09 (1.8× the goal)", "met", "met"}
	if diff := cmp.Diff(want, verdicts); diff != "" {
		t.Errorf("verdicts (-want +got):\n%s", diff)
	}
	page := r.section("performance-path.svg")
	for _, s := range []string{"| 300 | read | 2.50 / 2.50 / 5.00 |", "+0.200", "hit rate **99.00%**", "performance-path.svg", "| edge | 30.0 | 30.0 |"} {
		if !strings.Contains(page, s) {
			t.Errorf("section lacks %q:\n%s", s, page)
		}
	}
	if svg := chart(r); !strings.HasPrefix(svg, "<svg") || strings.Count(svg, "<rect") != 8 {
		t.Errorf("chart: want an SVG with 4 bars and 4 legend boxes, got:\n%s", svg)
	}
}

// TestReportRoundTrip: -report renders the page from the saved JSON exactly as the run did.
func TestReportRoundTrip(t *testing.T) {
	r := &results{Hops: map[string]int{"read": 2, "pay": 3}, Rounds: 1, Window: "6s", Workers: 4, PeakOn: 90, PeakOff: 100}
	res := newResult()
	res.OK, res.Elapsed = 10, 1e9
	res.Latency["read"] = ms(1, 2, 3)
	r.addOpen(100, "on", 0, window{res: res, rss: map[string]float64{"edge": 30}, perProc: map[string]float64{"edge": 0.01}})
	r.addOpen(100, "off", 0, window{res: res, rss: map[string]float64{"edge": 29}})
	r.addClosed("on", window{res: res, perProc: map[string]float64{"edge": 0.01}})
	r.Profile = profile{Requests: 10, Top: []topLine{{Func: "f", FlatUS: 1}}, Parts: []part{{Func: "g", What: "audit line", CumUS: 2}}}
	r.derive()
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	var back results
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(r.section("x.svg"), back.section("x.svg")); diff != "" {
		t.Errorf("page from saved results differs (-run +saved):\n%s", diff)
	}
	if diff := cmp.Diff(chart(r), chart(&back)); diff != "" {
		t.Errorf("chart from saved results differs (-run +saved):\n%s", diff)
	}
}

// TestLoadWords: the page calls the machine heavily loaded only when a recorded one-minute
// load average exceeded its cores.
func TestLoadWords(t *testing.T) {
	for _, tc := range []struct {
		start, end string
		cores      int
		want       string
	}{
		{"17.86 22.21 23.92", "24.69 22.21 23.07", 2, "**heavily loaded by other work**"},
		{"0.70 3.63 5.22", "5.81 4.52 5.15", 2, "**heavily loaded by other work**"},
		{"0.70 3.63 5.22", "1.81 4.52 5.15", 2, "shared with other work"},
		{"", "", 2, "shared with other work"},
	} {
		r := &results{LoadStart: tc.start, LoadEnd: tc.end}
		r.Machine.Cores = tc.cores
		if diff := cmp.Diff(tc.want, r.loadWords()); diff != "" {
			t.Errorf("load %q → %q on %d cores (-want +got):\n%s", tc.start, tc.end, tc.cores, diff)
		}
	}
}
