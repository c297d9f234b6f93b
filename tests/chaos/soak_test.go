package chaos

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ztbank/ztbank/tools/devstack/stack"
)

// Soak parameters. The SVID TTL is short so every service rotates its certificate many
// times (the agent renews at half-life); the database passwords rotate on the stack's own
// schedule (a third of stack.CredentialTTL) and, in addition, every soakPasswordEvery.
const (
	soakSVIDTTL       = 2 * time.Minute
	soakSampleEvery   = 10 * time.Second
	soakPasswordEvery = 3 * time.Minute
	soakDefaultRate   = 20.0
)

// TestSoak runs steady load for ZTBANK_SOAK_DURATION (make soak: 30m) at ZTBANK_SOAK_RATE
// operations per second across SVID and password rotations. No request may fail; every
// soakSampleEvery it samples each service's RSS, goroutines and open descriptors, and it
// writes the curves (an SVG chart) and their summary to the reliability document.
func TestSoak(t *testing.T) {
	durStr := os.Getenv("ZTBANK_SOAK_DURATION")
	if durStr == "" {
		t.Skip("ZTBANK_SOAK_DURATION unset: the soak runs from make soak")
	}
	dur, err := time.ParseDuration(durStr)
	if err != nil {
		t.Fatalf("ZTBANK_SOAK_DURATION: %v", err)
	}
	rate := soakDefaultRate
	if v := os.Getenv("ZTBANK_SOAK_RATE"); v != "" {
		if rate, err = strconv.ParseFloat(v, 64); err != nil || rate <= 0 {
			t.Fatalf("ZTBANK_SOAK_RATE %q: want a positive number", v)
		}
	}
	ctx, cancel := context.WithTimeout(t.Context(), dur+15*time.Minute)
	defer cancel()
	e := startEnv(t, ctx, func(o *stack.Options) { o.SVIDTTL = soakSVIDTTL })
	want, err := e.customerTotals(ctx)
	if err != nil {
		t.Fatal(err)
	}
	refreshesBefore := e.credentialRefreshes(ctx)

	start := time.Now()
	l := startLoad(ctx, e, loadConfig{Rate: rate, Workers: 32, RetryBudget: 2 * requestTimeout})
	var samples []sample
	sampleTick := time.NewTicker(soakSampleEvery)
	pwTick := time.NewTicker(soakPasswordEvery)
	end := time.After(dur)
	rotations := 0
	scrapeAll := func() {
		at := time.Since(start)
		for name, svc := range e.st.Services {
			s, err := scrape(ctx, name, svc.Health, at)
			if err != nil {
				t.Errorf("sample %s at %s: %v", name, at.Round(time.Second), err)
				continue
			}
			samples = append(samples, s)
		}
	}
	scrapeAll()
loop:
	for {
		select {
		case <-ctx.Done():
			t.Fatal(ctx.Err())
		case <-sampleTick.C:
			scrapeAll()
		case <-pwTick.C:
			if err := e.st.RotateNow(ctx); err != nil {
				t.Errorf("password rotation: %v", err)
			}
			rotations++
		case <-end:
			break loop
		}
	}
	sampleTick.Stop()
	pwTick.Stop()
	scrapeAll()
	l.finish()
	elapsed := l.stopped.Sub(l.started)

	all := summarise(l.attempts(l.started, l.stopped.Add(time.Hour)))
	invErr := waitFor(ctx, pendingSettleTimeout, time.Second, func() error { return e.checkInvariants(ctx, want) })
	refreshesAfter := e.credentialRefreshes(ctx)
	restarts := 0
	for _, svc := range e.st.Services {
		restarts += svc.Restarts()
	}

	curves := summariseCurves(samples, soakSVIDTTL)
	var b strings.Builder
	fmt.Fprintf(&b, "## Soak\n\n")
	fmt.Fprintf(&b, "`make soak`, run %s: %s of steady open-loop load at a target of %.0f operations/s "+
		"(payments between two bank-b customers with an Idempotency-Key each, a balance read, a bank-a profile read; "+
		"all through the edge), SVID TTL %s (each service renews about every %s), database passwords rotated by "+
		"the stack every %s and by the test every %s (%d extra rotations; pools opened %d connections with a "+
		"rotated password).\n\n",
		start.UTC().Format("2006-01-02 15:04 MST"), elapsed.Round(time.Second), rate, soakSVIDTTL, soakSVIDTTL/2,
		stack.CredentialTTL/3, soakPasswordEvery, rotations, int(refreshesAfter-refreshesBefore))
	fmt.Fprintf(&b, "| attempts | failed | operations lost | achieved rate | ticks missed (all clients busy) | supervisor restarts | invariants |\n")
	fmt.Fprintf(&b, "|---|---|---|---|---|---|---|\n")
	fmt.Fprintf(&b, "| %d | %d | %d | %.1f/s | %d | %d | %s |\n\n", all.Attempts, all.Failed, l.opsLost.Load(),
		float64(all.Attempts)/elapsed.Seconds(), l.missed.Load(), restarts, invariantText(invErr))
	if len(all.Examples) > 0 {
		fmt.Fprintf(&b, "Failures seen: `%s`\n\n", strings.Join(all.Examples, "`, `"))
	}
	fmt.Fprintf(&b, "![RSS, goroutines and open file descriptors per service during the soak](reliability-soak.svg)\n\n")
	fmt.Fprintf(&b, "Steady state (from %s on, after the first SVID rotation), first → last (peak):\n\n", soakSVIDTTL)
	fmt.Fprintf(&b, "| service | RSS MiB | goroutines | open fds |\n|---|---|---|---|\n")
	for _, c := range curves {
		fmt.Fprintf(&b, "| %s | %.1f → %.1f (%.1f) | %.0f → %.0f (%.0f) | %.0f → %.0f (%.0f) |\n", c.Service,
			c.RSSFirst, c.RSSLast, c.RSSMax, c.GorFirst, c.GorLast, c.GorMax, c.FDFirst, c.FDLast, c.FDMax)
	}
	writeBeside(t, "reliability-soak.svg", chartSVG(samples, fmt.Sprintf("ztbank soak, %s at %.0f ops/s target", elapsed.Round(time.Minute), rate)))
	writeSection(t, "soak", b.String())

	if all.Failed > 0 || l.opsLost.Load() > 0 {
		t.Errorf("%d of %d attempts failed (%d operations lost); first: %v", all.Failed, all.Attempts, l.opsLost.Load(), all.Examples)
	}
	if invErr != nil {
		t.Errorf("invariants after the soak: %v", invErr)
	}
	if restarts > 0 {
		t.Errorf("%d supervisor restarts during the soak: a service died", restarts)
	}
	if refreshesAfter <= refreshesBefore {
		t.Errorf("no pool opened a connection with a rotated password (refreshes %v → %v)", refreshesBefore, refreshesAfter)
	}
	// Flat: after warm-up, no resource may keep growing. The bounds are deliberately loose
	// against noise (GC timing, pool sizes under a burst) and tight against a leak per
	// request: at the soak's rate a leak of one goroutine or descriptor per request would
	// exceed them within a minute.
	for _, c := range curves {
		if c.GorLast > 2*c.GorFirst+50 {
			t.Errorf("%s: goroutines grew %v → %v", c.Service, c.GorFirst, c.GorLast)
		}
		if c.FDLast > 2*c.FDFirst+50 {
			t.Errorf("%s: open fds grew %v → %v", c.Service, c.FDFirst, c.FDLast)
		}
		if c.RSSLast > 2*c.RSSFirst+64 {
			t.Errorf("%s: RSS grew %.1f → %.1f MiB", c.Service, c.RSSFirst, c.RSSLast)
		}
	}
}

func invariantText(err error) string {
	if err == nil {
		return "held"
	}
	return "**violated**: " + err.Error()
}

// credentialRefreshes sums ztbank_db_credential_refreshes_total over the services.
func (e *env) credentialRefreshes(ctx context.Context) float64 {
	var sum float64
	for _, svc := range e.st.Services {
		sum += metricSum(ctx, svc.Health, "ztbank_db_credential_refreshes_total")
	}
	return sum
}
