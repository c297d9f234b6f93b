package cli_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/ztbank/ztbank/libs/cli"
)

// TestMain lets the test binary stand in for a binary whose main is cli.Main: with
// CLI_TEST_RUN set it runs Main with a run that succeeds or fails as asked, and never
// reaches the tests.
func TestMain(m *testing.M) {
	if mode := os.Getenv("CLI_TEST_RUN"); mode != "" {
		cli.Main("probe", func(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
			fmt.Fprintf(stdout, "args=%d env=%s ctx=%v\n", len(args), getenv("CLI_TEST_RUN"), ctx.Err())
			if mode == "fail" {
				return errors.New("no such thing")
			}
			return nil
		})
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func TestMainExit(t *testing.T) {
	for _, tc := range []struct {
		mode       string
		wantCode   int
		wantStdout string
		wantStderr string
	}{
		{"ok", 0, "args=1 env=ok ctx=<nil>\n", ""},
		{"fail", 1, "args=1 env=fail ctx=<nil>\n", "probe: no such thing\n"},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			cmd := exec.Command(os.Args[0])
			cmd.Env = append(os.Environ(), "CLI_TEST_RUN="+tc.mode)
			var stdout, stderr strings.Builder
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			err := cmd.Run()
			code := 0
			if ee := (*exec.ExitError)(nil); errors.As(err, &ee) {
				code = ee.ExitCode()
			} else if err != nil {
				t.Fatal(err)
			}
			got := []any{code, stdout.String(), stderr.String()}
			if diff := cmp.Diff([]any{tc.wantCode, tc.wantStdout, tc.wantStderr}, got); diff != "" {
				t.Errorf("exit code, stdout, stderr mismatch (-want +got):\n%s", diff)
			}
		})
	}
}
