#!/usr/bin/env bash
# `make run`: run the operator in the foreground with readable logs.
#   KUBECONFIG set   -> against that cluster (install the CRDs there yourself: kubectl apply -f crds/).
#   KUBECONFIG unset -> start the local control plane (.cluster/), install the CRDs, apply
#                       examples/, and show a zero-downtime rotation a few seconds after start.
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
cat <<MSG

[run] local control plane up. In another terminal:
  export KUBECONFIG=$KUBECONFIG
  alias kubectl=$kubectl
  kubectl get streamingtokens -w                  # Ready, phase, consumers, last rotation
  kubectl get deployments,pods                    # consumers rolling
  kubectl describe streamingtoken telemetry       # conditions and Events
  kubectl get clusterstreamingtokens              # one pair in team-a and team-b
  $operator status fleet --cluster      # where each namespace stands
  $operator rotate telemetry --wait   # rotate again
  curl -s localhost:8080/metrics | grep streamingtoken_
[run] a rotation starts in 10 seconds; Ctrl-C stops everything.

MSG
"$operator" run --metrics-bind-address 127.0.0.1:8080 &
operator_pid=$!
(
  sleep 10
  "$operator" rotate telemetry -n default --wait --timeout 5m | sed 's/^/[demo] /'
  "$kubectl" get streamingtokens -n default | sed 's/^/[demo] /'
  "$operator" rotate fleet --cluster --wait --timeout 5m | sed 's/^/[demo] /'
  "$kubectl" get clusterstreamingtokens | sed 's/^/[demo] /'
) &
demo_pid=$!
wait "$operator_pid"
