# The console (issue 16): the topology picture, live authorisation decisions and the
# isolation matrix, in a browser. ADR 0970.
.PHONY: topology-svg console console-test console-screenshot chromium

TEST_EXTRA += console-test

topology-svg: ## redraw docs/topology.svg from topology.yaml (a test keeps the committed file current)
	@$(GO) test -count=1 -run '^TestCommittedSVGIsCurrent$$' ./tools/console/diagram -args -update >/dev/null
	@echo "==> wrote docs/topology.svg"

console: ## serve the console for the running stack (make up) on https://127.0.0.1:8444; prints its URL with a one-time token
	@[ -x $(BIN)/devstack ] && $(BIN)/devstack status >/dev/null 2>&1 || { echo "no stack running: start one with make up" >&2; exit 1; }
	@$(GO) build -o $(BIN)/console ./tools/console
	@OBS=$(OBS) exec $(BIN)/console

chromium: ## install Debian's chromium (the console's browser test drives it) if missing
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || { \
		echo "==> installing the Debian package chromium (for the console's browser test)"; \
		SUDO=; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends chromium >/dev/null \
			|| echo "==> WARNING: could not install chromium; console-test will be SKIPPED"; }

# The browser test starts its own stack on free ports (beside any `make dev`), the console,
# and chromium; it keeps a screenshot in .dev/console-test/console.png.
console-test: spire chromium ## the console in a real headless browser against a real local stack
	@mkdir -p $(DEV)
	@set -o pipefail; $(GO) test -count=1 -timeout 6m -v -run '^TestConsoleInBrowser$$' ./tests/console 2>&1 \
		| grep -vE '^\s+console_test.go:[0-9]+: ==> ' | tee $(DEV)/console-test.log \
		| grep -E '^(=== RUN|--- |ok|FAIL|PASS)|^\s+(console_test.go|--- )|SKIP'; \
	status=$${PIPESTATUS[0]}; \
	if grep -q -- '--- SKIP: TestConsoleInBrowser' $(DEV)/console-test.log; then \
		echo "SKIPPED: console-test (no chromium; see above)"; echo "tests/console TestConsoleInBrowser: SKIPPED (no chromium)" >> $(TEST_SKIPS); fi; \
	exit $$status

console-screenshot: spire chromium ## run the browser test and keep its screenshot as docs/console.png (for the README)
	@$(GO) test -count=1 -timeout 6m -run '^TestConsoleInBrowser$$' ./tests/console -args -screenshot=$(CURDIR)/docs/console.png
	@echo "==> wrote docs/console.png"
