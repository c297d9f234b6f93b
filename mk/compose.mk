# The docker-compose stack, run for real on the local Docker Engine (issue 11, ADR 0910).
# Compose v2 is a pinned Go tool (tools/compose), built once into .dev/bin like SPIRE; the
# images come from `make images` (no registry, never pulled).
.PHONY: e2e-local demo-local compose-tool compose-up compose-down compose-ps compose-logs e2e-compose demo-compose compose-test compose-leftovers

COMPOSE_VERSION := v2.40.3
COMPOSE_BIN     := $(BIN)/docker-compose
COMPOSE_PROJECT ?= ztbank
COMPOSE         := $(COMPOSE_BIN) -f docker-compose.yml -p $(COMPOSE_PROJECT)
COMPOSE_DIR     := $(DEV)/compose
COMPOSE_STACK   := $(CURDIR)/$(COMPOSE_DIR)/stack.json
# Cold start on 2 cores: SPIRE, two PostgreSQL initdb runs, migrations, then seven services.
COMPOSE_WAIT    ?= 420
HAVE_DOCKER      = docker info >/dev/null 2>&1

compose-tool: $(COMPOSE_BIN) ## build Docker Compose v2.40.3 from the Go module proxy into .dev/bin (cached)

$(COMPOSE_BIN): tools/compose/go.mod tools/compose/go.sum
	@echo "==> building Docker Compose $(COMPOSE_VERSION) as a Go tool (first build takes several minutes on 2 cores; cached after)"
	@mkdir -p $(BIN)
	@cd tools/compose && GOWORK=off CGO_ENABLED=0 $(GO) build -trimpath \
		-ldflags "-s -w -X github.com/docker/compose/v2/internal.Version=$(COMPOSE_VERSION)" \
		-o ../../$(COMPOSE_BIN) github.com/docker/compose/v2/cmd
	@touch $(COMPOSE_BIN)

compose-up: $(COMPOSE_BIN) ## build the images and start the compose stack; returns once every service is healthy
	@$(HAVE_DOCKER) || { echo "compose-up: no Docker Engine answers (docker info failed)" >&2; exit 1; }
	@$(MAKE) --no-print-directory images
	@echo "==> docker compose up --wait (project $(COMPOSE_PROJECT))"
	@t0=$$(date +%s); $(COMPOSE) up -d --wait --wait-timeout $(COMPOSE_WAIT) \
		|| { $(COMPOSE) ps -a; $(COMPOSE) logs --tail 30; exit 1; }; \
		echo "==> compose stack healthy after $$(( $$(date +%s) - t0 ))s"
	@$(GO) run ./tools/composeinit stack -compose $(COMPOSE_BIN) -project $(COMPOSE_PROJECT) -dir $(COMPOSE_DIR)

compose-down: $(COMPOSE_BIN) ## stop the compose stack and remove its containers, networks and volumes
	@$(HAVE_DOCKER) || { echo "compose-down: no Docker Engine answers (docker info failed)" >&2; exit 1; }
	@$(COMPOSE) down --volumes --remove-orphans --timeout 20
	@rm -rf $(COMPOSE_DIR)

compose-ps: $(COMPOSE_BIN) ## show the compose stack's containers
	@$(COMPOSE) ps -a

compose-logs: $(COMPOSE_BIN) ## the compose stack's logs (SERVICE=name for one)
	@$(COMPOSE) logs --tail 200 $(SERVICE)

# `make e2e TARGET=compose` lands here: the isolation suite, unchanged, against the compose
# stack described by .dev/compose/stack.json (started first if it is not up).
e2e-compose: $(COMPOSE_BIN) ## the isolation suite against the compose stack (make e2e TARGET=compose)
	@[ -f $(COMPOSE_STACK) ] && [ -n "$$($(COMPOSE) ps -q edge 2>/dev/null)" ] || $(MAKE) --no-print-directory compose-up
	@$(GO) test -count=1 -v -timeout 20m ./tests/e2e -args -stack=$(COMPOSE_STACK) -report=$(CURDIR)/$(COMPOSE_DIR)/isolation-matrix.md \
		| grep -E '^e2e:|^(ok|FAIL|---)|^\s+\S+_test.go'; exit $${PIPESTATUS[0]}

demo-compose: $(COMPOSE_BIN) ## the narrated isolation demo against the compose stack
	@[ -f $(COMPOSE_STACK) ] && [ -n "$$($(COMPOSE) ps -q edge 2>/dev/null)" ] || $(MAKE) --no-print-directory compose-up
	@$(GO) run ./tools/demo -stack $(COMPOSE_STACK)

# compose-leftovers fails when anything of the project is still on the engine.
compose-leftovers:
	@left="$$(docker ps -aq --filter label=com.docker.compose.project=$(COMPOSE_PROJECT)) \
		$$(docker network ls -q --filter label=com.docker.compose.project=$(COMPOSE_PROJECT)) \
		$$(docker volume ls -q --filter label=com.docker.compose.project=$(COMPOSE_PROJECT))"; \
	if [ -n "$$(echo $$left | tr -d ' ')" ]; then echo "compose: left behind: $$left" >&2; exit 1; fi; \
	echo "==> nothing of project $(COMPOSE_PROJECT) is left (containers, networks, volumes)"

# compose-test: bring the stack up from nothing, run the isolation suite and the fault tests
# against it, bring it down and check that nothing is left. Without a Docker Engine it says
# so and skips.
compose-test: ## compose stack from nothing: up, isolation suite, fault tests under load, down, nothing left (skips without Docker)
	@if ! $(HAVE_DOCKER); then echo "compose-test: SKIPPED: no Docker Engine answers (docker info failed); the compose stack, its isolation suite and fault tests did not run"; exit 0; fi; \
	set -eo pipefail; $(MAKE) --no-print-directory $(COMPOSE_BIN); \
	$(COMPOSE) down --volumes --remove-orphans --timeout 20 >/dev/null 2>&1 || true; \
	trap '$(COMPOSE) logs --tail 40 >$(DEV)/compose-failure.log 2>&1 || true; $(COMPOSE) down --volumes --remove-orphans --timeout 20 >/dev/null 2>&1 || true' EXIT; \
	t0=$$(date +%s); $(MAKE) --no-print-directory compose-up; t1=$$(date +%s); \
	$(MAKE) --no-print-directory e2e-compose; t2=$$(date +%s); \
	ZTBANK_COMPOSE_STACK=$(COMPOSE_STACK) ZTBANK_COMPOSE_PROJECT=$(COMPOSE_PROJECT) $(GO) test -count=1 -v -timeout 20m ./tests/compose 2>&1 | tee $(DEV)/compose-test.log \
		| grep -E '^(=== RUN|--- |ok|FAIL|PASS)|compose:|_test.go'; t3=$$(date +%s); \
	trap - EXIT; $(MAKE) --no-print-directory compose-down; t4=$$(date +%s); \
	$(MAKE) --no-print-directory compose-leftovers; \
	echo "==> compose-test: up $$((t1-t0))s, isolation suite $$((t2-t1))s, fault tests $$((t3-t2))s, down $$((t4-t3))s"

TEST_EXTRA += compose-test
