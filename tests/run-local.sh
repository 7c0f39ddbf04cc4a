#!/usr/bin/env bash
# `make run`: run the operator in the foreground with readable logs.
#   KUBECONFIG set   -> against that cluster (install the CRDs there yourself: kubectl apply -f crds/).
#   KUBECONFIG unset -> start the local control plane (.cluster/) and the test platform
#                       (tests/platform, on 127.0.0.1:18480), install the CRDs, apply examples/
#                       and examples/platform/quix-rotate.yaml, and show zero-downtime rotations
#                       a few seconds after start (one of them done at the platform).
# Ctrl-C stops the operator and, for the local control plane, everything it started.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
cargo build --quiet
operator=target/debug/streaming-token-operator
export RUST_LOG=${RUST_LOG:-info,streaming_token_operator=info,kube=warn}

if [ -n "${KUBECONFIG:-}" ]; then
  echo "[run] using KUBECONFIG=$KUBECONFIG"
  exec "$operator" run --metrics-bind-address "${METRICS_BIND_ADDRESS:-127.0.0.1:8080}"
fi

export CLUSTER_DIR=$PWD/.cluster
cleanup() {
  [ -n "${demo_pid:-}" ] && kill "$demo_pid" 2>/dev/null || true
  [ -n "${platform_pid:-}" ] && kill "$platform_pid" 2>/dev/null || true
  [ -n "${operator_pid:-}" ] && kill "$operator_pid" 2>/dev/null && wait "$operator_pid" 2>/dev/null || true
  tests/controlplane/cluster.sh down
}
trap cleanup EXIT
trap 'exit 130' INT TERM
tests/controlplane/cluster.sh up
export KUBECONFIG=$CLUSTER_DIR/kubeconfig
kubectl="$(cat "$CLUSTER_DIR/run/bin")/kubectl"
"$kubectl" apply -f crds/
"$kubectl" wait --for=condition=Established crd/streamingtokens.streamingtoken.io crd/clusterstreamingtokens.streamingtoken.io --timeout=30s >/dev/null
"$kubectl" apply -f examples/
# The test platform plays the streaming platform (Quix's portal API): the workspace "demo", a
# Personal Access Token with the Admin role in Secret quix-pat, and a StreamingToken that
# rotates there itself (examples/platform/quix-rotate.yaml).
platform_bin=$(tests/go-helper.sh platform)
admin=http://127.0.0.1:18481
"$platform_bin" --listen 127.0.0.1:18480 --admin-listen 127.0.0.1:18481 \
  --ready-file "$CLUSTER_DIR/platform.ready" >/dev/null 2>"$CLUSTER_DIR/logs/platform.log" &
platform_pid=$!
for _ in $(seq 1 50); do [ -s "$CLUSTER_DIR/platform.ready" ] && break; sleep 0.1; done
curl -sf -X POST "$admin/admin/workspaces" -d '{"id":"demo"}' >/dev/null
pat=$(curl -sf -X POST "$admin/admin/pats" -d '{"role":"Admin","expiresIn":"720h"}' | sed -E 's/.*"pat":"([^"]+)".*/\1/')
"$kubectl" create secret generic quix-pat -n default --from-literal=pat="$pat" \
  --dry-run=client -o yaml | "$kubectl" apply -f - >/dev/null
"$kubectl" apply -f examples/platform/quix-rotate.yaml
cat <<MSG

[run] local control plane up. In another terminal:
  export KUBECONFIG=$KUBECONFIG
  alias kubectl=$kubectl
  kubectl get streamingtokens -w                  # Ready, phase, consumers, last rotation
  kubectl get deployments,pods                    # consumers rolling
  kubectl describe streamingtoken telemetry       # conditions and Events
  kubectl get clusterstreamingtokens              # one pair in team-a and team-b
  $operator check                       # CRDs, the operator (its Lease), your rights
  $operator version                     # this CLI's and the running operator's
  $operator status fleet --cluster      # where each namespace stands
  $operator rotate telemetry --wait   # rotate again
  $operator status telemetry-platform # what the platform says about each token
  curl -s $admin/admin/calls?endpoint=rotate      # the test platform's record of rotate calls
  curl -s localhost:8080/metrics | grep streamingtoken_
[run] a rotation starts in 10 seconds; Ctrl-C stops everything.

MSG
# With leader election (a Lease in default), as the chart runs it: the leader publishes its
# version there for `version` and `check`.
"$operator" run --leader-elect --metrics-bind-address 127.0.0.1:8080 &
operator_pid=$!
(
  sleep 10
  "$operator" rotate telemetry -n default --wait --timeout 5m | sed 's/^/[demo] /'
  "$kubectl" get streamingtokens -n default | sed 's/^/[demo] /'
  "$operator" rotate fleet --cluster --wait --timeout 5m | sed 's/^/[demo] /'
  "$kubectl" get clusterstreamingtokens | sed 's/^/[demo] /'
  "$operator" rotate telemetry-platform -n default --wait --timeout 5m | sed 's/^/[demo] /'
  "$operator" status telemetry-platform -n default | sed -n '1,6p' | sed 's/^/[demo] /'
  calls=$(curl -sf "$admin/admin/calls?endpoint=rotate" | grep -o '"endpoint":"rotate"' | wc -l)
  echo "[demo] the test platform recorded $calls rotate call(s) for telemetry-platform's rotation" 
) &
demo_pid=$!
wait "$operator_pid"
