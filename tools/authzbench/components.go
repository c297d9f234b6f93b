package main

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"regexp"
	"strings"
)

// component is one measurement taken by running an existing test or benchmark of the
// library that owns it, so the page reports what those tests measured in this run.
type component struct {
	What    string   `json:"what"`
	Command string   `json:"command"`
	Lines   []string `json:"lines"` // the measured lines, as the test printed them
	Err     string   `json:"error,omitempty"`
}

var components = []struct {
	what string
	args []string
	keep *regexp.Regexp
}{
	{"mTLS handshakes per 1,000 steady-state requests (server-side counter ztbank_mtls_handshakes_total)",
		[]string{"test", "-count=1", "-run", "^TestSteadyStateMakesNoNewHandshakes$", "-v", "./libs/transport"},
		regexp.MustCompile(`handshakes: .*`)},
	{"IAM token generations per service over 30 simulated minutes at load (fake clock, 16 connection attempts per service per second)",
		[]string{"test", "-count=1", "-run", "^TestThirtySimulatedMinutesAtLoad$", "-v", "./libs/dbcred/rdsiam"},
		regexp.MustCompile(`\w+_svc: \d+ token generations.*`)},
	{"mTLS reconnects across SVID rotations: full against resumed handshakes (a client keeping 4 HTTP/1.1 connections; ADR 1001)",
		[]string{"test", "-count=1", "-run", "^TestReconnectsAfterRotationResume$", "-v", "./libs/transport"},
		regexp.MustCompile(`[a-zA-Z ,]+: \d+ full, \d+ resumed handshakes for \d+ connections`)},
	{"cost of one mTLS handshake, both ends, loopback: full against resumed (ADR 1001)",
		[]string{"test", "-count=1", "-run", "^$", "-bench", "^BenchmarkHandshake$", "-benchtime", "500x", "-benchmem", "./libs/transport"},
		regexp.MustCompile(`BenchmarkHandshake/\S+\s+\d+\s+[\d.]+ ns/op.*`)},
	{"IAM token rollover through a real pgx pool and PostgreSQL (rdsiam.Source, dbcred.Pool, db.Transact; logins judged by awsfake.RDSIAM; token life scaled from 15 min to 10 s)",
		[]string{"test", "-count=1", "-run", "^TestRolloverThroughARealPool$", "-v", "./libs/dbcred/rdsiam"},
		regexp.MustCompile(`\S+ at \d+ workers through a pool of .*`)},
	{"internal-JWT verification per hop, without and with the verified-token cache",
		[]string{"test", "-count=1", "-run", "^$", "-bench", "^BenchmarkVerify(Uncached|Cached)$", "-benchtime", "2000x", "-benchmem", "./libs/usertoken"},
		regexp.MustCompile(`BenchmarkVerify\S+\s+\d+\s+[\d.]+ ns/op.*`)},
}

// measureComponents runs each component's test with the go command and keeps the lines
// that carry its figures; a failing test is reported on the page, not hidden.
func measureComponents(ctx context.Context) []component {
	var out []component
	for _, c := range components {
		cmd := exec.CommandContext(ctx, "go", c.args...)
		var buf bytes.Buffer
		cmd.Stdout, cmd.Stderr = &buf, &buf
		err := cmd.Run()
		comp := component{What: c.what, Command: "go " + strings.Join(c.args, " ")}
		for _, m := range c.keep.FindAllString(buf.String(), -1) {
			comp.Lines = append(comp.Lines, strings.Join(strings.Fields(m), " "))
		}
		if err != nil || len(comp.Lines) == 0 {
			comp.Err = fmt.Sprintf("%v; output ends: %s", err, tail(buf.String(), 400))
		}
		out = append(out, comp)
	}
	return out
}

func tail(s string, n int) string {
	if len(s) > n {
		s = s[len(s)-n:]
	}
	return strings.TrimSpace(s)
}
