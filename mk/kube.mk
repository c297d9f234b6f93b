# A real Kubernetes API server for the deploy tests (issue 11): kube-apiserver and etcd are
# built from the Go module proxy through the wrapper module tools/kube (k8s.io/kubernetes
# v1.34.2 with each staging module at v0.34.2, etcd v3.6.4), cached by its go.mod/go.sum like
# SPIRE. The test downloads nothing at run time and needs no Docker.
KUBE_VERSION := v1.34.2
ETCD_VERSION := v3.6.4
KUBE_BINS    := $(BIN)/kube-apiserver $(BIN)/etcd

# kube-apiserver reports its version from these variables (left at "v0.0.0-master" otherwise,
# which clients and kubeadm refuse); etcd prints its git SHA in `etcd --version`.
KUBE_LDFLAGS := -s -w \
	-X k8s.io/component-base/version.gitVersion=$(KUBE_VERSION) \
	-X k8s.io/component-base/version.gitMajor=1 \
	-X k8s.io/component-base/version.gitMinor=34 \
	-X k8s.io/component-base/version.gitTreeState=clean \
	-X k8s.io/component-base/version.buildDate=1970-01-01T00:00:00Z \
	-X k8s.io/client-go/pkg/version.gitVersion=$(KUBE_VERSION) \
	-X k8s.io/client-go/pkg/version.gitMajor=1 \
	-X k8s.io/client-go/pkg/version.gitMinor=34 \
	-X go.etcd.io/etcd/api/v3/version.GitSHA=module-$(ETCD_VERSION)

.PHONY: kube-tools kube-test
TEST_EXTRA += kube-test

kube-tools: $(KUBE_BINS) ## build kube-apiserver v1.34.2 and etcd v3.6.4 from the Go module proxy (cold: see docs/adr/0920)

$(KUBE_BINS) &: tools/kube/go.mod tools/kube/go.sum
	@echo "==> building kube-apiserver $(KUBE_VERSION) and etcd $(ETCD_VERSION) as Go tools (cold build takes many minutes on 2 cores; cached after)"
	@mkdir -p $(BIN)
	@# One go build for both, so the two links overlap with compiling on 2 cores. go names
	@# go.etcd.io/etcd/server/v3's binary "server"; it is renamed to etcd.
	@rm -rf $(BIN)/.kube-build && mkdir -p $(BIN)/.kube-build
	@cd tools/kube && GOWORK=off CGO_ENABLED=0 $(GO) build -ldflags '$(KUBE_LDFLAGS)' -o ../../$(BIN)/.kube-build/ \
		k8s.io/kubernetes/cmd/kube-apiserver go.etcd.io/etcd/server/v3
	@mv $(BIN)/.kube-build/kube-apiserver $(BIN)/kube-apiserver && mv $(BIN)/.kube-build/server $(BIN)/etcd && rmdir $(BIN)/.kube-build
	@test -x $(BIN)/kube-apiserver && test -x $(BIN)/etcd
	@touch $(KUBE_BINS)

kube-test: kube-tools ## apply the kind and eks renderings server-side to a real kube-apiserver + etcd (Pod Security enforced)
	@# The CRD source modules (Istio, spire-controller-manager, External Secrets) into the module
	@# cache; a no-op once cached. The test then only reads the cache.
	@cd tools/kube/crds && GOWORK=off GOFLAGS=-mod=readonly $(GO) mod download
	@cd deploy/check && KUBE_BIN_DIR=$(CURDIR)/$(BIN) GOWORK=off $(GO) test -count=1 -timeout 20m ./apiserver/...
