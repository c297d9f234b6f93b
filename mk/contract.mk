# The deploy contract (issue 11): every container of every rendering (kind and eks overlays,
# docker-compose.yml) goes through its binary's own config loader, every address it dials
# resolves, every reference exists, every variable set is read. tests/contract is a workspace
# package, so `make unit` (go test work) already runs it: it is not added to TEST_EXTRA.
.PHONY: contract env-doc

contract: ## the deploy contract test alone (also part of make unit)
	@$(GO) test -count=1 ./tests/contract

env-doc: ## regenerate docs/configuration.md from the binaries' config loaders
	@$(GO) test -count=1 ./tests/contract -run TestEnvDoc -update
