package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"
)

// profile is where the zero-trust-on hot path spends CPU: a profile of every service taken
// during one closed-loop window, merged, and each service's CPU from /proc over the same
// window, both divided by the requests answered.
type profile struct {
	Requests   int64              `json:"requests"`
	Seconds    float64            `json:"seconds"`
	PerService map[string]float64 `json:"cpu_us_per_request_by_process"`
	Top        []topLine          `json:"top"`
	Parts      []part             `json:"zero_trust_parts"`
	Raw        string             `json:"pprof_top"`
	Err        string             `json:"error,omitempty"`
}

// topLine is one function of `go tool pprof -top`: its own (flat) CPU per request.
type topLine struct {
	Func         string  `json:"func"`
	FlatUS       float64 `json:"flat_us_per_request"`
	FlatPct      float64 `json:"flat_pct"`
	CumUS        float64 `json:"cum_us_per_request"`
	CumPct       float64 `json:"cum_pct"`
	FlatDuration string  `json:"flat"`
}

func (b *bench) profile(ctx context.Context, m *mode) (profile, error) {
	dur := b.cfg.Profile
	dir := b.cfg.PprofDir
	if dir == "" {
		tmp, err := os.MkdirTemp("", "pathbench-pprof")
		if err != nil {
			return profile{}, err
		}
		defer os.RemoveAll(tmp)
		dir = tmp
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return profile{}, err
	}
	svc, pg := m.pids()
	cpu0 := map[string]float64{}
	for name, pid := range svc {
		cpu0[name] = cpuSeconds([]int{pid})
	}
	pg0 := cpuSeconds(pg)
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		files []string
		errs  []string
	)
	secs := int(dur.Seconds())
	for name, addr := range m.pprof {
		wg.Go(func() {
			f := filepath.Join(dir, strings.ReplaceAll(name, "/", "-")+".pb.gz")
			if err := fetch(ctx, fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", addr, secs), f, dur+30*time.Second); err != nil {
				mu.Lock()
				errs = append(errs, name+": "+err.Error())
				mu.Unlock()
				return
			}
			mu.Lock()
			files = append(files, f)
			mu.Unlock()
		})
	}
	// The load runs a little longer than the profiles, so they see only steady load.
	fmt.Fprintf(b.stderr, "==> profiling the zero-trust-on path (%s closed loop)\n", dur)
	r := m.tgt.closedLoop(ctx, b.cfg.Workers, dur+time.Second, &b.seq)
	wg.Wait()
	p := profile{Requests: r.OK + r.Failed, Seconds: r.Elapsed.Seconds(), PerService: map[string]float64{}}
	for name, pid := range svc {
		p.PerService[name] = 1e6 * (cpuSeconds([]int{pid}) - cpu0[name]) / float64(max(p.Requests, 1))
	}
	p.PerService["postgresql"] = 1e6 * (cpuSeconds(pg) - pg0) / float64(max(p.Requests, 1))
	if len(files) == 0 {
		return p, fmt.Errorf("no profile: %s", strings.Join(errs, "; "))
	}
	sort.Strings(files)
	// go tool pprof merges the services' profiles into one: the hot path's CPU, all
	// processes together, by function.
	args := append([]string{"tool", "pprof", "-top", "-nodecount=12"}, files...)
	out, err := exec.CommandContext(ctx, "go", args...).Output()
	if err != nil {
		return p, fmt.Errorf("go tool pprof: %w", err)
	}
	p.Raw = string(out)
	// The profiles cover secs of the load's r.Elapsed seconds: scale requests to that span.
	perProfile := float64(p.Requests) * float64(secs) / max(p.Seconds, 1e-9)
	p.Top = parseTop(p.Raw, perProfile, 5)
	// The zero-trust parts by cumulative time: the flat top shows where cycles go (often
	// syscalls and the scheduler), this shows what each zero-trust step costs in all. No node
	// fraction: pprof would otherwise drop a step under 0.5% and the table would omit it.
	cum, err := exec.CommandContext(ctx, "go", append([]string{"tool", "pprof", "-top", "-cum", "-nodecount=2000", "-nodefraction=0"}, files...)...).Output()
	if err == nil {
		p.Parts = zeroTrustParts(parseTop(string(cum), perProfile, 2000))
	}
	return p, nil
}

// zeroTrustFuncs are the functions that do zero trust's work on the hot path, with what
// each stands for.
var zeroTrustFuncs = []struct{ fn, what string }{
	{"crypto/tls.(*Conn).Write", "TLS send: the hops' mTLS and the edge's public HTTPS (which off has too), syscalls included"},
	{"crypto/tls.(*Conn).Read", "TLS receive: likewise"},
	{"crypto/tls.(*Conn).HandshakeContext", "TLS handshakes"},
	{"github.com/ztbank/ztbank/libs/usertoken.(*Verifier).Verify", "internal-JWT verification (with its cache)"},
	{"github.com/ztbank/ztbank/libs/authz.(*Engine).enforce", "policy decision (Require and Check)"},
	{"github.com/ztbank/ztbank/libs/authz.(*auditor).write", "audit line (encoded and queued)"},
	// Since ADR 1002 the lines are written in batches off the request's path; their system
	// calls are still zero trust's cost and are counted here.
	{"github.com/ztbank/ztbank/libs/authz.(*auditSink).flush", "audit lines' batched writes"},
}

// zeroTrustParts picks zeroTrustFuncs out of a cumulative top, in that order.
func zeroTrustParts(all []topLine) []part {
	var out []part
	for _, z := range zeroTrustFuncs {
		for _, t := range all {
			if strings.TrimSuffix(t.Func, " (inline)") == z.fn {
				out = append(out, part{Func: z.fn, What: z.what, CumUS: t.CumUS, CumPct: t.CumPct})
				break
			}
		}
	}
	return out
}

// part is one zero-trust step's cumulative CPU per request.
type part struct {
	Func   string  `json:"func"`
	What   string  `json:"what"`
	CumUS  float64 `json:"cum_us_per_request"`
	CumPct float64 `json:"cum_pct"`
}

func fetch(ctx context.Context, url, dst string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(string(b)))
	}
	f, err := os.Create(dst)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// parseTop reads the first n function lines of `go tool pprof -top` (flat flat% sum% cum
// cum% name) and divides their CPU time by requests.
func parseTop(out string, requests float64, n int) []topLine {
	var lines []topLine
	header := false
	for _, l := range strings.Split(out, "\n") {
		f := strings.Fields(l)
		if len(f) >= 2 && f[0] == "flat" && f[1] == "flat%" {
			header = true
			continue
		}
		if !header || len(f) < 6 || len(lines) == n {
			continue
		}
		flat, err1 := time.ParseDuration(f[0])
		cum, err2 := time.ParseDuration(f[3])
		if err1 != nil || err2 != nil {
			continue
		}
		t := topLine{Func: strings.Join(f[5:], " "), FlatDuration: f[0],
			FlatPct: pct(f[1]), CumPct: pct(f[4])}
		if requests > 0 {
			t.FlatUS = float64(flat.Microseconds()) / requests
			t.CumUS = float64(cum.Microseconds()) / requests
		}
		lines = append(lines, t)
	}
	return lines
}

func pct(s string) float64 {
	var v float64
	fmt.Sscanf(strings.TrimSuffix(s, "%"), "%g", &v)
	return v
}
