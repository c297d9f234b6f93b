# The test suite's own tooling (issue 18, ADR 0940): Jaeger built once as a pinned Go tool so
# the Jaeger start test runs instead of skipping, and testreport, which turns `go test -json`
# into a readable log that ends with every skipped test and its reason.
.PHONY: jaeger testreport

JAEGER_BIN     := $(BIN)/jaeger
TESTREPORT_BIN := $(BIN)/testreport
# FAIL_ON_SKIP=1 makes `make unit` (and so `make test`) fail when any test skipped.
FAIL_ON_SKIP   ?= 0
# The skip list is also kept in TEST_SKIPS so `make test` can print it again at its very end.
TEST_SKIPS     := $(DEV)/test-skips.txt
TESTREPORT      = $(TESTREPORT_BIN) -skips-file $(TEST_SKIPS) $(if $(filter 1,$(FAIL_ON_SKIP)),-fail-on-skip)

jaeger: $(JAEGER_BIN) ## build Jaeger v1.76.0 from the pinned Go tool module tools/jaeger (many minutes the first time; cached after)

$(JAEGER_BIN): tools/jaeger/go.mod tools/jaeger/go.sum
	@echo "==> building Jaeger v1.76.0 as a Go tool (first build takes many minutes on 2 cores; cached after)"
	@mkdir -p $(BIN)
	@cd tools/jaeger && GOWORK=off $(GO) build -o ../../$(JAEGER_BIN) github.com/jaegertracing/jaeger/cmd/jaeger
	@test -x $(JAEGER_BIN)
	@touch $(JAEGER_BIN)

testreport: ## build the go test -json summariser used by make unit
	@mkdir -p $(BIN)
	@$(GO) build -o $(TESTREPORT_BIN) ./tools/testreport
