// Command testreport reads `go test -json` on stdin and prints what a person needs from a
// long run: one line per package, the full output of every failed test (and of a failed
// package whose failure belongs to no test: a TestMain error, a panic, a timeout, a build
// error), and at the end every skipped test with the reason it gave. `make test` pipes the
// whole suite through it, so a skip can no longer hide inside a green run.
//
//	go test -json ./... | go run ./tools/testreport [-fail-on-skip]
package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"
)

func main() {
	if err := run(os.Args, os.Stdin, os.Stdout); err != nil {
		fmt.Fprintf(os.Stderr, "testreport: %v\n", err)
		os.Exit(1)
	}
}

// event is one line of test2json output (go doc test2json).
type event struct {
	Action     string
	Package    string
	ImportPath string // build-output and build-fail events
	Test       string
	Output     string
	Elapsed    float64
}

// Skip is a skipped test and the reason it logged.
type Skip struct {
	Package, Test, Reason string
}

// Summary is what a run amounted to.
type Summary struct {
	Packages, FailedPackages int
	Passed, Failed           int
	Skips                    []Skip
}

var errFailed = errors.New("tests failed")

func run(args []string, in io.Reader, out io.Writer) error {
	fs := flag.NewFlagSet(args[0], flag.ContinueOnError)
	failOnSkip := fs.Bool("fail-on-skip", false, "exit non-zero when any test was skipped")
	skipsFile := fs.String("skips-file", "", "also write the skipped-test list to this `file`, for a later step to print")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	start := time.Now()
	sum, err := Report(in, out)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "==> %d packages, %d tests passed, %d failed, %d skipped (%s)\n",
		sum.Packages, sum.Passed, sum.Failed, len(sum.Skips), time.Since(start).Round(time.Second))
	list := skipList(sum.Skips)
	fmt.Fprint(out, list)
	if *skipsFile != "" {
		if err := os.WriteFile(*skipsFile, []byte(list), 0o644); err != nil {
			return err
		}
	}
	switch {
	case sum.Failed > 0 || sum.FailedPackages > 0:
		return fmt.Errorf("%w: %d tests in %d packages", errFailed, sum.Failed, sum.FailedPackages)
	case *failOnSkip && len(sum.Skips) > 0:
		return fmt.Errorf("%d tests skipped and -fail-on-skip is set", len(sum.Skips))
	}
	return nil
}

// skipList is the end-of-run list of skipped tests with their reasons.
func skipList(skips []Skip) string {
	if len(skips) == 0 {
		return "==> no test was skipped\n"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "==> skipped tests (%d):\n", len(skips))
	for _, s := range skips {
		fmt.Fprintf(&b, "    %s %s: %s\n", s.Package, s.Test, s.Reason)
	}
	return b.String()
}

// Report consumes the event stream, printing as it goes, and returns the summary.
func Report(in io.Reader, out io.Writer) (Summary, error) {
	var sum Summary
	type key struct{ pkg, test string }
	outputs := map[key][]string{}
	build := map[string][]string{}
	testFailed := map[string]bool{}
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		line := sc.Bytes()
		var e event
		if err := json.Unmarshal(line, &e); err != nil || e.Action == "" {
			// Not an event (go vet or linker noise on stdout): show it as is.
			fmt.Fprintln(out, string(line))
			continue
		}
		k := key{e.Package, e.Test}
		switch e.Action {
		case "build-output":
			build[e.ImportPath] = append(build[e.ImportPath], e.Output)
		case "build-fail":
			fmt.Fprintf(out, "--- build failed: %s\n%s", e.ImportPath, strings.Join(build[e.ImportPath], ""))
		case "output":
			outputs[k] = append(outputs[k], e.Output)
		case "pass":
			if e.Test == "" {
				sum.Packages++
				fmt.Fprintf(out, "ok   %s %.1fs\n", e.Package, e.Elapsed)
			} else {
				sum.Passed++
			}
			delete(outputs, k)
		case "skip":
			if e.Test == "" {
				sum.Packages++
				fmt.Fprintf(out, "?    %s [no test files]\n", e.Package)
			} else {
				sum.Skips = append(sum.Skips, Skip{e.Package, e.Test, reason(outputs[k])})
			}
			delete(outputs, k)
		case "fail":
			if e.Test != "" {
				sum.Failed++
				testFailed[e.Package] = true
				fmt.Fprintf(out, "--- FAIL %s %s (%.1fs)\n%s", e.Package, e.Test, e.Elapsed, indent(outputs[k]))
				delete(outputs, k)
				continue
			}
			sum.Packages++
			sum.FailedPackages++
			// A package can fail with no failed test (TestMain, panic, timeout): its own
			// output is then the only clue, so print it whole.
			if !testFailed[e.Package] || len(outputs[k]) > 0 {
				fmt.Fprintf(out, "--- FAIL %s (package output)\n%s", e.Package, indent(outputs[k]))
			}
			fmt.Fprintf(out, "FAIL %s %.1fs\n", e.Package, e.Elapsed)
			delete(outputs, k)
		}
	}
	if err := sc.Err(); err != nil {
		return sum, err
	}
	sort.Slice(sum.Skips, func(i, j int) bool {
		return sum.Skips[i].Package+" "+sum.Skips[i].Test < sum.Skips[j].Package+" "+sum.Skips[j].Test
	})
	return sum, nil
}

// reason extracts what a skipped test logged, without the framework's own lines.
func reason(lines []string) string {
	var parts []string
	for _, l := range lines {
		t := strings.TrimSpace(l)
		if t == "" || strings.HasPrefix(t, "=== ") || strings.HasPrefix(t, "--- SKIP") {
			continue
		}
		parts = append(parts, t)
	}
	if len(parts) == 0 {
		return "(no reason given)"
	}
	return strings.Join(parts, " ")
}

func indent(lines []string) string {
	var b strings.Builder
	for _, l := range lines {
		b.WriteString("    ")
		b.WriteString(l)
		if !strings.HasSuffix(l, "\n") {
			b.WriteByte('\n')
		}
	}
	return b.String()
}
