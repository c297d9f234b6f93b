package main

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// stream is a go test -json run: one package with a pass, a skip with its reason, a failed
// test, and a package that failed in TestMain without any failed test.
const stream = `{"Action":"run","Package":"a","Test":"TestOK"}
{"Action":"output","Package":"a","Test":"TestOK","Output":"=== RUN   TestOK\n"}
{"Action":"pass","Package":"a","Test":"TestOK","Elapsed":0.1}
{"Action":"run","Package":"a","Test":"TestJaeger"}
{"Action":"output","Package":"a","Test":"TestJaeger","Output":"=== RUN   TestJaeger\n"}
{"Action":"output","Package":"a","Test":"TestJaeger","Output":"    obs_test.go:106: no Jaeger binary at .dev/bin/jaeger\n"}
{"Action":"output","Package":"a","Test":"TestJaeger","Output":"--- SKIP: TestJaeger (0.00s)\n"}
{"Action":"skip","Package":"a","Test":"TestJaeger","Elapsed":0}
{"Action":"run","Package":"a","Test":"TestBad"}
{"Action":"output","Package":"a","Test":"TestBad","Output":"    x_test.go:9: want 1, got 2\n"}
{"Action":"fail","Package":"a","Test":"TestBad","Elapsed":0.2}
{"Action":"fail","Package":"a","Elapsed":1.5}
{"Action":"output","Package":"b","Output":"start local stack: spire-server did not become ready\n"}
{"Action":"output","Package":"b","Output":"FAIL\tb\t3.0s\n"}
{"Action":"fail","Package":"b","Elapsed":3}
{"Action":"skip","Package":"c","Elapsed":0}
not json at all
`

func TestReport(t *testing.T) {
	var out bytes.Buffer
	sum, err := Report(strings.NewReader(stream), &out)
	if err != nil {
		t.Fatal(err)
	}
	want := Summary{Packages: 3, FailedPackages: 2, Passed: 1, Failed: 1,
		Skips: []Skip{{"a", "TestJaeger", "obs_test.go:106: no Jaeger binary at .dev/bin/jaeger"}}}
	if diff := cmp.Diff(want, sum); diff != "" {
		t.Errorf("Report() mismatch (-want +got):\n%s", diff)
	}
	for _, line := range []string{
		"--- FAIL a TestBad (0.2s)\n    " + "    x_test.go:9: want 1, got 2\n",
		"FAIL a 1.5s\n",
		// The package that failed without a failed test shows its own output.
		"--- FAIL b (package output)\n    start local stack: spire-server did not become ready\n",
		"?    c [no test files]\n",
		"not json at all\n",
	} {
		if !strings.Contains(out.String(), line) {
			t.Errorf("output lacks %q:\n%s", line, out.String())
		}
	}
}

func TestRunExitStatus(t *testing.T) {
	skipOnly := `{"Action":"output","Package":"a","Test":"TestS","Output":"    s_test.go:1: needs docker\n"}
{"Action":"skip","Package":"a","Test":"TestS"}
{"Action":"pass","Package":"a"}
`
	for _, tc := range []struct {
		name, in string
		args     []string
		wantErr  bool
		wantOut  string
	}{
		{"failures fail", stream, nil, true, "==> skipped tests (1):\n    a TestJaeger: obs_test.go:106"},
		{"skips listed, not failed by default", skipOnly, nil, false, "    a TestS: s_test.go:1: needs docker\n"},
		{"skips fail on request", skipOnly, []string{"-fail-on-skip"}, true, "a TestS"},
		{"clean run", `{"Action":"pass","Package":"a"}` + "\n", nil, false, "==> no test was skipped\n"},
		{"skips file", skipOnly, []string{"-skips-file", filepath.Join(t.TempDir(), "skips.txt")}, false, "a TestS"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			err := run(append([]string{"testreport"}, tc.args...), strings.NewReader(tc.in), &out)
			if (err != nil) != tc.wantErr {
				t.Errorf("run() = %v, want error %v", err, tc.wantErr)
			}
			if tc.wantErr && tc.in == stream && !errors.Is(err, errFailed) {
				t.Errorf("run() = %v, want errFailed", err)
			}
			if !strings.Contains(out.String(), tc.wantOut) {
				t.Errorf("output lacks %q:\n%s", tc.wantOut, out.String())
			}
			if len(tc.args) == 2 && tc.args[0] == "-skips-file" {
				b, err := os.ReadFile(tc.args[1])
				if err != nil || !strings.Contains(string(b), "    a TestS: s_test.go:1: needs docker\n") {
					t.Errorf("skips file = %q, %v", b, err)
				}
			}
		})
	}
}
