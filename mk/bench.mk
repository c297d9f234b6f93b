# Performance measurements (issue 14, ADR 0980). Not part of `make test`: they are slow and
# their figures depend on what else the machine is doing.
.PHONY: opa bench-authz

OPA_BIN := $(BIN)/opa

opa: $(OPA_BIN) ## build OPA v1.22.3 (the version libs pins) from the pinned Go tool module tools/opa (a few minutes the first time; cached after)

$(OPA_BIN): tools/opa/go.mod tools/opa/go.sum
	@echo "==> building OPA as a Go tool (tools/opa)"
	@mkdir -p $(BIN)
	@cd tools/opa && GOWORK=off $(GO) build -o ../../$(OPA_BIN) github.com/open-policy-agent/opa
	@test -x $(OPA_BIN)
	@touch $(OPA_BIN)

bench-authz: $(OPA_BIN) ## policy decision side by side (embedded engine, opa run --server), plus handshake, IAM-token and JWT-verify tests; writes docs/performance.md
	@mkdir -p $(DEV)/bench
	@$(GO) run ./tools/authzbench -opa $(OPA_BIN) -n 20000 -components -json $(DEV)/bench/authz.json -md docs/performance.md
