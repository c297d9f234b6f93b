package main

import (
	"encoding/xml"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// requiredVersion returns the version go.mod at path requires of module mod.
func requiredVersion(t *testing.T, path, mod string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(strings.TrimPrefix(strings.TrimSpace(line), "require "))
		if len(f) >= 2 && f[0] == mod {
			return f[1]
		}
	}
	t.Fatalf("%s does not require %s", path, mod)
	return ""
}

// The side-by-side peer must be the OPA the engine embeds, or the ratio compares versions.
func TestOPAToolPinsTheEmbeddedVersion(t *testing.T) {
	const mod = "github.com/open-policy-agent/opa"
	libs, tool := requiredVersion(t, "../../libs/go.mod", mod), requiredVersion(t, "../opa/go.mod", mod)
	if libs != tool {
		t.Errorf("tools/opa builds OPA %s but libs embeds %s; update tools/opa/go.mod (go get -tool %s@%s)", tool, libs, mod, libs)
	}
}

func TestSummarise(t *testing.T) {
	var d []time.Duration
	for i := 100; i >= 1; i-- { // reversed: summarise must sort
		d = append(d, time.Duration(i)*time.Microsecond)
	}
	got := summarise("x", d)
	want := dist{Name: "x", N: 100, P50: 50, P90: 90, P99: 99, Mean: 50.5}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("summarise mismatch (-want +got):\n%s", diff)
	}
}

func TestVerdict(t *testing.T) {
	for _, tc := range []struct {
		got, goal float64
		lower     bool
		want      string
	}{
		{10, 15, true, "met"},
		{30, 15, true, "**missed** by 2.0× (30 vs 15)"},
		{25, 20, false, "met"},
		{5, 20, false, "**missed** by 4.0× (5 vs 20)"},
	} {
		if got := verdict(tc.got, tc.goal, tc.lower); got != tc.want {
			t.Errorf("verdict(%v, %v, %v) = %q, want %q", tc.got, tc.goal, tc.lower, got, tc.want)
		}
	}
}

// The chart must be well-formed XML with one bar per percentile and engine.
func TestChartIsWellFormedSVG(t *testing.T) {
	r := &results{Workload: "w", Decisions: 10, Dists: []dist{
		{Name: "a", P50: 5, P90: 9, P99: 40}, {Name: "b", P50: 60, P90: 90, P99: 400}, {Name: "c", P50: 300, P90: 900, P99: 4000}}}
	svg := chart(r)
	dec := xml.NewDecoder(strings.NewReader(svg))
	rects := 0
	for {
		tok, err := dec.Token()
		if err != nil {
			if err.Error() != "EOF" {
				t.Fatalf("chart is not well-formed: %v", err)
			}
			break
		}
		if se, ok := tok.(xml.StartElement); ok && se.Name.Local == "rect" {
			rects++
		}
	}
	if rects != 9 {
		t.Errorf("chart has %d bars, want 9", rects)
	}
}
