# The request-path benchmark of issue 14: two local stacks, zero trust on and off (the
# bench-only build tag ztbench_off), driven through their edges with the same requests,
# interleaved. Not part of `make test`: it takes several minutes and its figures depend on
# what else the machine is doing. Writes its section of docs/performance.md and the chart.
.PHONY: bench-path

bench-path: spire ## request path with zero trust on and off side by side: latency at fixed rates, peak throughput, CPU and RSS, handshakes, JWT-cache hits, CPU profile; writes docs/performance.md (a few minutes)
	@mkdir -p $(DEV)/bench
	@timeout 900 $(GO) run ./tools/pathbench -state $(DEV)/bench/stacks -pprof-dir $(DEV)/bench/pprof -md docs/performance.md -json $(DEV)/bench/path.json
