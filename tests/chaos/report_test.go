package chaos

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// docPath is where make chaos and make soak write their results (ZTBANK_RELIABILITY_DOC);
// unset — as in make test's short run — the report goes to the test log only.
func docPath() string { return os.Getenv("ZTBANK_RELIABILITY_DOC") }

const docHeader = `# Reliability

What the platform does under faults and over time, measured on the local stack
(tools/devstack: real SPIRE, PostgreSQL with rotating passwords, the dev OIDC provider, the
edge and every service) by tests/chaos. ` + "`make chaos`" + ` writes the fault table, ` + "`make soak`" + ` the
soak section; ` + "`make test`" + ` runs a short chaos run that writes nothing. Decisions: ADR 0995–0999.

`

// writeSection replaces the text between <!-- name:begin --> and <!-- name:end --> in the
// reliability document (creating either), so the chaos and soak runs each own their part.
func writeSection(t *testing.T, name, body string) {
	t.Helper()
	path := docPath()
	if path == "" {
		t.Logf("%s report (not written: ZTBANK_RELIABILITY_DOC unset):\n%s", name, body)
		return
	}
	old, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	doc := string(old)
	if doc == "" {
		doc = docHeader
	}
	begin, end := "<!-- "+name+":begin -->", "<!-- "+name+":end -->"
	section := begin + "\n" + strings.TrimSpace(body) + "\n" + end
	i, j := strings.Index(doc, begin), strings.Index(doc, end)
	if i >= 0 && j > i {
		doc = doc[:i] + section + doc[j+len(end):]
	} else {
		doc = strings.TrimRight(doc, "\n") + "\n\n" + section + "\n"
	}
	if err := os.WriteFile(path, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("wrote the %s section of %s", name, path)
}

// writeBeside writes a file next to the reliability document (the soak chart).
func writeBeside(t *testing.T, name, content string) string {
	t.Helper()
	if docPath() == "" {
		return ""
	}
	p := filepath.Join(filepath.Dir(docPath()), name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func yesNo(ok bool) string {
	if ok {
		return "held"
	}
	return "**violated**"
}

func pct(n, d int) string {
	if d == 0 {
		return "0"
	}
	return fmt.Sprintf("%.1f%%", 100*float64(n)/float64(d))
}
