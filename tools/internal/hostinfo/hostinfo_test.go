package hostinfo

import (
	"os"
	"runtime"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestDescribe: the fields that need no /proc are always there; on Linux the /proc ones
// are read too (an empty memory or load would leave the page's machine line half blank).
func TestDescribe(t *testing.T) {
	m := Describe()
	if diff := cmp.Diff([]any{runtime.NumCPU(), runtime.Version(), runtime.GOOS + "/" + runtime.GOARCH},
		[]any{m.Cores, m.Go, m.OS}); diff != "" {
		t.Errorf("runtime fields mismatch (-want +got):\n%s", diff)
	}
	if _, err := os.Stat("/proc/meminfo"); err != nil {
		t.Skip("no /proc here")
	}
	if !strings.HasSuffix(m.Mem, "kB") {
		t.Errorf("Mem = %q, want MemTotal's value in kB", m.Mem)
	}
	if got := len(strings.Fields(LoadAvg())); got != 3 {
		t.Errorf("LoadAvg() = %q, want three averages", LoadAvg())
	}
}
