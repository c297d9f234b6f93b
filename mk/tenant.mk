# Tenants are data (issue 13, ADR 0955): `make tenant` adds a tenant to the topology and
# writes what is generated from it, or removes one it added; tenant-regen rewrites the
# committed files derived from the topology.
.PHONY: tenant tenant-regen tenant-test compose-generate

tenant: ## add a tenant (NEW=bank-c [SERVICES=gateway,user,account,payment,ledger]) or remove one it added (REMOVE=bank-c)
	@$(GO) run ./tools/tenant $(if $(NEW),-new '$(NEW)') $(if $(REMOVE),-remove '$(REMOVE)') $(if $(SERVICES),-services '$(SERVICES)')
	@$(MAKE) --no-print-directory tenant-regen

tenant-regen: generate aws-generate topology-svg compose-generate
	@$(GO) test -count=1 -short -run '^TestMatrixUpToDate$$' ./tests/e2e -args -report=docs/isolation-matrix.md >/dev/null
	@# The kind overlay's enrolment table lists the demo users, one set per tenant (devkit/devoidc).
	@$(GO) test -count=1 -run '^TestKindEnrolmentCurrent$$' ./devkit/devoidc -args -update >/dev/null
	@echo "==> regenerated deploy/k8s/generated, deploy/aws/generated, docs/topology.svg, docs/isolation-matrix.md (and .html), docker-compose.yml and its companions, the kind overlay's edge-enrolment.yaml"

compose-generate: ## rewrite docker-compose.yml, images.json's composeinit dirs, the Prometheus targets and Falco namespaces from the topology (tools/composegen)
	@$(GO) run ./tools/composegen

tenant-test: spire ## in a copy of the tree: make tenant NEW=bank-c, the isolation suite on that stack, then REMOVE restores the copy byte for byte
	@$(GO) test -tags tenantstack -count=1 -v -timeout 45m ./tests/tenant | grep -E '^(=== RUN|--- |ok|FAIL|PASS)|tenant_test.go|e2e:'; exit $${PIPESTATUS[0]}
