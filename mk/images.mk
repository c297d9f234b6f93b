# Container images built on this machine, with no registry (issue 11, docs/adr/0900-*).
# tools/images builds every binary on the host, imports each image from a tar it writes
# (`docker import`), and skips an image whose inputs-hash label already matches.
.PHONY: images images-test
IMAGES_FLAGS ?=

# IMAGES_FLAGS=-force rebuilds every image even when its inputs label matches.
# Without a Docker Engine there is nothing to build into: say so and go on, so that `make
# test` on such a machine reports the skip instead of failing.
images: ## build every container image here (no registry): Go services, SPIRE, PostgreSQL; cached by content
	@if ! docker version >/dev/null 2>&1; then \
		echo "==> SKIPPED make images: no Docker Engine reachable (docker version fails); no image built"; exit 0; fi; \
	$(GO) build -o $(BIN)/images ./tools/images && $(BIN)/images build $(IMAGES_FLAGS)

# The image tests need the images, so `go test work` (make unit) skips them unless
# ZTBANK_IMAGE_TESTS is set; this target sets it after building. Without an engine the tests
# skip themselves and say why.
images-test: images ## image tests: non-root, read-only start, healthcheck errors, PostgreSQL TLS+scram, SPIRE sqlite, .dockerignore
	@ZTBANK_IMAGE_TESTS=1 $(GO) test -count=1 -timeout 20m ./tools/images/...

TEST_EXTRA += images-test
