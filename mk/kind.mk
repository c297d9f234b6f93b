# kind: first the probe (issue 12). kind starts every node with `docker run --privileged`;
# the probe shows whether this engine allows that, in a few seconds and without kind.
.PHONY: kind-probe

kind-probe: ## can this Docker Engine host kind nodes? writes .dev/kind-probe.md; exits 1 when it cannot
	@mkdir -p $(DEV)
	@CGO_ENABLED=0 $(GO) build -o $(BIN)/kindprobe ./tools/kindprobe
	@$(BIN)/kindprobe -o $(DEV)/kind-probe.md
