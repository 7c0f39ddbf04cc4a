#!/usr/bin/env bash
# Starts a fresh control plane, runs the e2e tests against it, and always tears it down.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export CLUSTER_DIR=${E2E_CLUSTER_DIR:-$PWD/.cluster/e2e}
cleanup() {
  # Operators the tests started are killed when their test ends; this catches any left behind.
  pkill -KILL -f "$PWD/target/debug/streaming-token-operator run" 2>/dev/null || true
  tests/registry/registry.sh down "$CLUSTER_DIR/registry" || true
  # The real node before the control plane (it deletes its pods through the API server).
  tests/node/node.sh down || true
  for member in "${MEMBERS[@]}"; do
    CLUSTER_DIR=$CLUSTER_DIR/members/$member tests/controlplane/cluster.sh down || true
  done
  tests/controlplane/cluster.sh down || true
}
MEMBERS=(east west)
trap cleanup EXIT INT TERM
start=$(date +%s)
tests/controlplane/cluster.sh up
# Two member clusters, each its own etcd, kube-apiserver, controller-manager, scheduler and
# KWOK node, for the tests of a StreamingToken whose pair several clusters use
# (tests/e2e/members.rs, which fail without STO_E2E_MEMBERS).
STO_E2E_MEMBERS=
for member in "${MEMBERS[@]}"; do
  # No watch cache: a watch that resumes after the member's API server restarted is served from
  # etcd's history (every event, with its revision) instead of a relist, so the ledgers there
  # know when each pod went.
  CLUSTER_DIR=$CLUSTER_DIR/members/$member CLUSTER_NODES=1 CLUSTER_APISERVER_FLAGS=--watch-cache=false \
    tests/controlplane/cluster.sh up
  STO_E2E_MEMBERS+="${STO_E2E_MEMBERS:+,}$member=$CLUSTER_DIR/members/$member"
done
export STO_E2E_MEMBERS
# A real node (tests/node: containerd, runc, the pinned kubelet) next to the KWOK nodes, for the
# real-node tests (tests/e2e/realnode.rs), which fail without STO_E2E_REAL_NODE. A cold build of
# the kubelet takes about a minute once the control plane's build filled Go's build cache.
node_start=$(date +%s)
tests/node/node.sh up
export STO_E2E_REAL_NODE=$CLUSTER_DIR
# The operator's image without a container engine (tests/image: crane, the static binary with
# the Dockerfile's flags), checked against the Dockerfile; the real-node test installs it with
# the chart. A cold static release build takes several minutes on 2 cores.
image_dir=$(tests/image/build.sh)
tests/image/check.sh "$image_dir"
export STO_E2E_OPERATOR_IMAGE=$image_dir
echo "[e2e] real node and operator image ready in $(( $(date +%s) - node_start ))s"
# A registry on 127.0.0.1 (tests/registry) holding the release as tests/release.sh publishes it:
# the chart as an OCI artifact, the image as an OCI index over STO_IMAGE_PLATFORMS; the publish
# test installs the chart from it and fails without it. linux/amd64 only by default: arm64 is a
# second static release build (about 6 minutes cold on 2 cores);
# STO_IMAGE_PLATFORMS="linux/amd64 linux/arm64" tests the two-platform index `make release` pushes.
export STO_IMAGE_PLATFORMS=${STO_IMAGE_PLATFORMS:-linux/amd64}
export STO_E2E_IMAGE_PLATFORMS=$STO_IMAGE_PLATFORMS
export STO_E2E_REGISTRY
STO_E2E_REGISTRY=$(tests/registry/registry.sh up "$CLUSTER_DIR/registry")
tests/release.sh "$STO_E2E_REGISTRY" "$CLUSTER_DIR/registry/release" >/dev/null
# The release's kubectl plugin archives and krew manifest, which the publish test installs with
# krew itself (tests/krew).
export STO_E2E_RELEASE=$CLUSTER_DIR/registry/release
STO_E2E_KREW=$(tests/go-helper.sh krew)
export STO_E2E_KREW
# The kstatus helper (Flux's health library) judges real StreamingTokens in the e2e tests.
STO_E2E_KSTATUS=$(tests/go-helper.sh kstatus)
export STO_E2E_KSTATUS
# Argo CD's own Lua runtime judges the shipped health check (a cold build takes ~3 minutes).
STO_E2E_ARGOCD_HEALTH=$(tests/go-helper.sh argocd-health)
export STO_E2E_ARGOCD_HEALTH
# Prometheus' promtool checks and unit-tests the chart's alerts.
STO_E2E_PROMTOOL=$(tests/go-helper.sh promtool)
export STO_E2E_PROMTOOL
# The real Argo Rollouts controller (and its CRDs) for Rollouts as consumers.
STO_E2E_ARGO_ROLLOUTS=$(tests/go-helper.sh argo-rollouts)
export STO_E2E_ARGO_ROLLOUTS
# The test platform: a real HTTP server playing the streaming platform (tests/platform).
STO_E2E_PLATFORM=$(tests/go-helper.sh platform)
export STO_E2E_PLATFORM
export STO_E2E_KUBECONFIG=$CLUSTER_DIR/kubeconfig
STO_E2E_BIN=$(cat "$CLUSTER_DIR/run/bin")
export STO_E2E_BIN
export STO_E2E_AUDIT_LOG=$CLUSTER_DIR/logs/audit.log
status=0
# E2E_ARGS: extra arguments for the test binary (make bench: `bench -- --ignored --nocapture`).
# shellcheck disable=SC2086
cargo test --locked --features e2e --test e2e -- --test-threads="${E2E_THREADS:-4}" ${E2E_ARGS:-} || status=$?
echo "[e2e] control plane + e2e tests took $(( $(date +%s) - start ))s (exit $status)"
exit $status
