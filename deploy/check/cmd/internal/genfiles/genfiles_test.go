package genfiles

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

type genFile struct {
	Name string
	Body []byte
}

func TestWrite(t *testing.T) {
	dir := t.TempDir()
	// "blocked" is a file, so nothing can be written below it; the files around it must
	// still be written and the failure reported.
	if err := os.WriteFile(filepath.Join(dir, "blocked"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	files := []genFile{
		{"top.yaml", []byte("a")},
		{"blocked/x.yaml", []byte("b")},
		{"nested/deeper/c.json", []byte("c")},
	}
	var stdout strings.Builder
	err := Write(dir, files, &stdout)
	if err == nil || !strings.Contains(err.Error(), "create "+filepath.Join(dir, "blocked")) {
		t.Errorf("Write = %v, want the blocked directory reported", err)
	}
	got := map[string]string{}
	for _, name := range []string{"top.yaml", "nested/deeper/c.json"} {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		got[name] = string(b)
	}
	if diff := cmp.Diff(map[string]string{"top.yaml": "a", "nested/deeper/c.json": "c"}, got); diff != "" {
		t.Errorf("written files mismatch (-want +got):\n%s", diff)
	}
	want := "wrote " + filepath.Join(dir, "top.yaml") + "\nwrote " + filepath.Join(dir, "nested", "deeper", "c.json") + "\n"
	if diff := cmp.Diff(want, stdout.String()); diff != "" {
		t.Errorf("stdout mismatch (-want +got):\n%s", diff)
	}
}
