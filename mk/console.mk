# The console (issue 16): the topology picture, live authorisation decisions and the
# isolation matrix, in a browser. ADR 0970.
.PHONY: topology-svg

topology-svg: ## redraw docs/topology.svg from topology.yaml (a test keeps the committed file current)
	@$(GO) test -count=1 -run '^TestCommittedSVGIsCurrent$$' ./tools/console/diagram -args -update >/dev/null
	@echo "==> wrote docs/topology.svg"
