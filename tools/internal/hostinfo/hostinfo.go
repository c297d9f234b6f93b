// Package hostinfo describes the machine a benchmark ran on, for the pages its results
// become: on a shared machine a latency means little without the cores and load behind it.
package hostinfo

import (
	"os"
	"runtime"
	"strings"
)

// Info is the machine as the results JSON records it.
type Info struct {
	CPU   string `json:"cpu"`
	Cores int    `json:"cores"`
	Mem   string `json:"mem_total"`
	Go    string `json:"go"`
	OS    string `json:"os"`
}

// Describe reads the CPU model and total memory from /proc; where /proc is not there they
// stay empty and the rest still describes the run.
func Describe() Info {
	m := Info{Cores: runtime.NumCPU(), Go: runtime.Version(), OS: runtime.GOOS + "/" + runtime.GOARCH}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "model name") {
				m.CPU = strings.TrimSpace(strings.SplitN(l, ":", 2)[1])
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		m.Mem = strings.TrimSpace(strings.TrimPrefix(strings.SplitN(string(b), "\n", 2)[0], "MemTotal:"))
	}
	return m
}

// LoadAvg is the 1, 5 and 15 minute load averages ("0.52 0.58 0.59"), or "" without /proc.
func LoadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	return strings.Join(strings.Fields(string(b))[:3], " ")
}
