package observability

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"testing"
)

// secretPatterns match token and password material that must never reach a log: bearer
// tokens, JWTs (header.payload start with base64 of `{"`), PEM private keys, password
// assignments and credentials inside connection strings.
var secretPatterns = []*regexp.Regexp{
	regexp.MustCompile(`(?i)bearer\s+[A-Za-z0-9._~+/-]{8,}`),
	regexp.MustCompile(`eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}`),
	regexp.MustCompile(`-----BEGIN [A-Z ]*PRIVATE KEY-----`),
	regexp.MustCompile(`(?i)"?(password|passwd|secret|client_secret)"?\s*[:=]\s*"?[^\s",}*]{3,}`),
	regexp.MustCompile(`(?i)postgres(ql)?://[^:/@\s]+:[^@\s]+@`),
}

// findSecrets returns the lines of b that carry secret material.
func findSecrets(b []byte) []string {
	var out []string
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for n := 1; sc.Scan(); n++ {
		for _, p := range secretPatterns {
			if p.Match(sc.Bytes()) {
				out = append(out, fmt.Sprintf("line %d: %s", n, sc.Text()))
				break
			}
		}
	}
	return out
}

// scanLogsForSecrets checks every log this package's run produced: the stack's services,
// SPIRE, and the traced instances. It runs after all tests, so it sees the full run.
func scanLogsForSecrets() []string {
	var found []string
	filepath.WalkDir(st.Dir, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || filepath.Ext(path) != ".log" {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return nil
		}
		for _, l := range findSecrets(b) {
			found = append(found, path+": "+l)
		}
		return nil
	})
	return found
}

func TestSecretPatternsCatchMaterial(t *testing.T) {
	for _, line := range []string{
		`{"msg":"call","authorization":"Bearer abcdefghijklmnop"}`,
		`{"token":"eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.sig"}`,
		`-----BEGIN EC PRIVATE KEY-----`,
		`{"password":"hunter22"}`,
		`dsn=postgres://ledger_svc:s3cret@127.0.0.1:5432/bank_b`,
	} {
		if got := findSecrets([]byte(line)); len(got) != 1 {
			t.Errorf("findSecrets(%q) found %d lines, want 1", line, len(got))
		}
	}
	for _, line := range []string{
		`{"msg":"reading password file","path":"/run/secrets/db"}`,
		`{"msg":"request","route":"/internal/chain","trace_id":"4bf92f3577b34da6a3ce929d0e0e4736"}`,
		`{"password":"***"}`,
	} {
		if got := findSecrets([]byte(line)); len(got) != 0 {
			t.Errorf("findSecrets(%q) flagged a harmless line: %v", line, got)
		}
	}
}

// TestRequestLogLinesCarryTraceAndCaller requires every request line of the traced
// services to be JSON with the trace ID, span ID and caller SPIFFE ID on it.
func TestRequestLogLinesCarryTraceAndCaller(t *testing.T) {
	client := mintedClient(t, workloadID(t, "edge"), workloadID(t, "bank-b/gateway"))
	resp, err := client.Get("https://" + traced["bank-b/gateway"].listen + "/internal/chain")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()

	for _, name := range chain {
		b, err := os.ReadFile(traced[name].logPath)
		if err != nil {
			t.Fatal(err)
		}
		requests := 0
		for _, line := range bytes.Split(bytes.TrimSpace(b), []byte("\n")) {
			var rec map[string]any
			if err := json.Unmarshal(line, &rec); err != nil {
				t.Errorf("%s: log line is not JSON: %s", name, line)
				continue
			}
			if rec["msg"] != "request" {
				continue
			}
			requests++
			for _, k := range []string{"trace_id", "span_id", "caller", "route", "status"} {
				if rec[k] == nil || rec[k] == "" {
					t.Errorf("%s: request line without %s: %s", name, k, line)
				}
			}
		}
		if requests == 0 {
			t.Errorf("%s logged no request lines", name)
		}
	}
}
