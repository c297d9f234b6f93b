package envvar

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

var vars = []Var{
	{Name: "A", Default: "1", Doc: "a."},
	{Name: "PEER_*", Doc: "one per peer."},
}

func TestReaderRecordsReads(t *testing.T) {
	env := map[string]string{"A": "x", "PEER_B": "y", "UNREAD": "z"}
	r := NewReader(func(k string) string { return env[k] }, vars)
	got := []string{r.Get("A"), r.Or("PEER_B", "d"), r.Or("PEER_C", "d")}
	if diff := cmp.Diff([]string{"x", "y", "d"}, got); diff != "" {
		t.Errorf("values mismatch (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"A", "PEER_B", "PEER_C"}, r.Read()); diff != "" {
		t.Errorf("Read() mismatch (-want +got):\n%s", diff)
	}
	if err := r.Err(); err != nil {
		t.Errorf("Err() = %v, want nil", err)
	}
}

func TestReaderRefusesUndeclared(t *testing.T) {
	r := NewReader(func(string) string { return "" }, vars)
	r.Get("B")
	r.Get("PEER_") // the family prefix alone is not a member
	err := r.Err()
	if err == nil || !strings.Contains(err.Error(), "B, PEER_") || strings.Contains(err.Error(), "\n") {
		t.Fatalf("Err() = %v, want one line naming B and PEER_", err)
	}
}

func TestMarkdownKeepsCellsOnOneLine(t *testing.T) {
	got := Markdown("# h\n", []Binary{{Name: "x", Summary: "S.", Vars: []Var{{Name: "V", Doc: "a | b\nc"}}}})
	want := "# h\n\n## x\n\nS.\n\n| Variable | Default | Meaning |\n| --- | --- | --- |\n| `V` | — | a \\| b c |\n"
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Markdown() mismatch (-want +got):\n%s", diff)
	}
}

func TestJoinKeepsFirstDeclaration(t *testing.T) {
	got := Join(vars, []Var{{Name: "A", Doc: "again"}, {Name: "C", Doc: "c."}})
	if diff := cmp.Diff([]Var{vars[0], vars[1], {Name: "C", Doc: "c."}}, got); diff != "" {
		t.Errorf("Join() mismatch (-want +got):\n%s", diff)
	}
}
