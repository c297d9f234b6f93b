//go:build ztbench_pprof

// tools/pathbench builds the services it measures with this tag (zero trust on and off
// alike) to take a CPU profile of the hot path: when ZTBANK_BENCH_PPROF names an address,
// net/http/pprof is served there. Production builds never carry the tag (tests/benchtag).

package server

import (
	"net/http"
	"net/http/pprof"
	"os"
)

func init() {
	addr := os.Getenv("ZTBANK_BENCH_PPROF")
	if addr == "" {
		return
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	go func() { _ = http.ListenAndServe(addr, mux) }()
}
