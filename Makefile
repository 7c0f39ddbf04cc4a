# streaming-token-operator: `make run` and `make test` are all a fresh machine needs
# (Rust and Go 1.26+). Kubernetes binaries are built from Go modules and cached in
# ~/.cache/streaming-token-operator (override with STO_CACHE_DIR).

SHELL := /bin/bash
CARGO ?= cargo
CLUSTER_DIR ?= $(CURDIR)/.cluster
E2E_CLUSTER_DIR ?= $(CURDIR)/.cluster/e2e
CRD := crds/streamingtokens.streamingtoken.io.yaml
CLUSTER_CRD := crds/clusterstreamingtokens.streamingtoken.io.yaml

.PHONY: all build crds controlplane cluster-up members-up cluster-down registry-up run test test-unit test-e2e lint helm-test bench release

all: build

build:
	$(CARGO) build --release

## Regenerate the CRD (and the chart's copy) from src/api.rs.
crds:
	$(CARGO) run --quiet -- crd streamingtokens > $(CRD)
	$(CARGO) run --quiet -- crd clusterstreamingtokens > $(CLUSTER_CRD)
	cp $(CRD) $(CLUSTER_CRD) charts/streaming-token-operator/files/crds/

## Build (or reuse from the cache) etcd, kube-apiserver, kube-controller-manager,
## kube-scheduler, kubectl, kwok and helm.
controlplane:
	@tests/controlplane/build.sh >/dev/null
	@echo "control-plane binaries: $$(tests/controlplane/build.sh)/bin"

## Start the local control plane in the background; admin kubeconfig in .cluster/kubeconfig.
cluster-up:
	@CLUSTER_DIR=$(CLUSTER_DIR) tests/controlplane/cluster.sh up

## Start two member clusters (east, west) next to it for the member-cluster tests, as make test
## does; their kubeconfigs in .cluster/members/<name>/kubeconfig.
members-up:
	@for member in east west; do \
	  CLUSTER_DIR=$(CLUSTER_DIR)/members/$$member CLUSTER_NODES=1 CLUSTER_APISERVER_FLAGS=--watch-cache=false \
	    tests/controlplane/cluster.sh up; \
	done

## Stop every process cluster-up (and members-up, registry-up) started and remove its state.
cluster-down:
	@tests/registry/registry.sh down $(CLUSTER_DIR)/registry
	@for member in east west; do CLUSTER_DIR=$(CLUSTER_DIR)/members/$$member tests/controlplane/cluster.sh down; done
	@CLUSTER_DIR=$(CLUSTER_DIR) tests/controlplane/cluster.sh down

## Start an OCI registry on 127.0.0.1 (state in .cluster/registry) and publish the chart and the
## image into it (tests/release.sh; STO_IMAGE_PLATFORMS, default linux/amd64, as make test), for
## `make test-e2e`'s publish test.
registry-up:
	@tests/registry/registry.sh down $(CLUSTER_DIR)/registry
	@STO_IMAGE_PLATFORMS="$${STO_IMAGE_PLATFORMS:-linux/amd64}" \
	  tests/release.sh "$$(tests/registry/registry.sh up $(CLUSTER_DIR)/registry)" $(CLUSTER_DIR)/registry/release >/dev/null

## Run the operator: against $$KUBECONFIG if set, else on a fresh local control plane with the
## CRDs and examples installed, showing a rotation. Ctrl-C stops everything.
run:
	@tests/run-local.sh

## Every test: lints, unit tests, chart tests, then e2e tests on a fresh control plane
## (always torn down, also when tests fail). The Go builds (control plane, real node, test
## helpers) and the static release builds of the image start in the background first
## (tests/prebuild.sh, logs in target/prebuild/) and are waited for where they are needed; a
## failed one prints its log's tail and fails the run.
test:
	@tests/prebuild.sh start
	@trap 'tests/prebuild.sh stop' EXIT; set -e; \
	$(MAKE) --no-print-directory lint test-unit; \
	$(CARGO) test --locked --features e2e --test e2e --no-run; \
	tests/prebuild.sh wait controlplane; \
	$(MAKE) --no-print-directory helm-test; \
	tests/prebuild.sh wait; \
	tests/run-e2e.sh

test-unit:
	$(CARGO) test --locked

lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --locked --all-targets --features e2e -- -D warnings

## helm lint and helm template with default and non-default values; then the upgrade from the
## previous chart release on a control plane of its own (CRDs upgraded, kept on uninstall).
helm-test: controlplane
	@tests/helm-test.sh
	@tests/chart-upgrade.sh

## e2e tests against an already running `make cluster-up` control plane (the real-node tests
## also need `CLUSTER_DIR=.cluster tests/node/node.sh up`, the publish test `make registry-up`).
test-e2e:
	STO_E2E_KUBECONFIG=$(CLUSTER_DIR)/kubeconfig STO_E2E_BIN=$$(cat $(CLUSTER_DIR)/run/bin) \
	STO_E2E_REAL_NODE=$(CLUSTER_DIR) STO_E2E_OPERATOR_IMAGE=$$(tests/image/build.sh) \
	STO_E2E_AUDIT_LOG=$(CLUSTER_DIR)/logs/audit.log STO_E2E_KSTATUS=$$(tests/go-helper.sh kstatus) \
	STO_E2E_ARGOCD_HEALTH=$$(tests/go-helper.sh argocd-health) \
	STO_E2E_PROMTOOL=$$(tests/go-helper.sh promtool) \
	STO_E2E_ARGO_ROLLOUTS=$$(tests/go-helper.sh argo-rollouts) \
	STO_E2E_PLATFORM=$$(tests/go-helper.sh platform) \
	STO_E2E_REGISTRY=$$(cat $(CLUSTER_DIR)/registry/address 2>/dev/null) \
	STO_E2E_RELEASE=$(CLUSTER_DIR)/registry/release STO_E2E_KREW=$$(tests/go-helper.sh krew) \
	STO_E2E_IMAGE_PLATFORMS="$${STO_IMAGE_PLATFORMS:-linux/amd64}" \
	STO_E2E_MEMBERS=east=$(CLUSTER_DIR)/members/east,west=$(CLUSTER_DIR)/members/west \
	$(CARGO) test --locked --features e2e --test e2e -- --test-threads=4

## What a release runs (tests/release.sh: helm package, helm push to oci://REGISTRY/charts, the
## image as an OCI index for linux/amd64 and linux/arm64, the kubectl plugin's archives and krew
## manifest (STO_PLUGIN_URL: where they will be uploaded), the digests), against RELEASE_REGISTRY
## (host:port, logged in beforehand) or, unset, a registry started on 127.0.0.1 for the run and
## stopped after it (a dry run). RELEASE_OUT keeps the packaged chart, the plugin archives, the
## krew manifest (streamingtoken.yaml) and release.env.
RELEASE_OUT ?= $(CURDIR)/target/release-oci
release:
	@if [ -n "$(RELEASE_REGISTRY)" ]; then \
	  tests/release.sh "$(RELEASE_REGISTRY)" "$(RELEASE_OUT)"; \
	else \
	  dir=$$(mktemp -d); trap 'tests/registry/registry.sh down "$$dir"' EXIT; \
	  tests/release.sh "$$(tests/registry/registry.sh up "$$dir")" "$(RELEASE_OUT)"; \
	fi

## Benchmarks on a fresh control plane: rotation latency (10 and 100 consumers), memory per
## 1,000 consumers. They print figures ([bench] lines); no timing is asserted.
bench:
	E2E_THREADS=1 E2E_ARGS="bench --ignored --nocapture" tests/run-e2e.sh 2>&1 | grep -E '^\[bench\]|test result|panicked'
