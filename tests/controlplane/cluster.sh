#!/usr/bin/env bash
# A real, local Kubernetes control plane on 127.0.0.1 for the end-to-end tests and `make run`:
# etcd, kube-apiserver (RBAC, ServiceAccount token signing), kube-controller-manager,
# kube-scheduler and the KWOK controller with two fake nodes.
#
#   cluster.sh up     start everything in the background, wait for readiness in order,
#                     write an admin kubeconfig to $CLUSTER_DIR/kubeconfig
#   cluster.sh down   stop every process it started and remove its state
#   cluster.sh status print which components are running
#   cluster.sh stop-apiserver / start-apiserver
#                     stop the kube-apiserver alone (an outage) and start it again as it was
#
# CLUSTER_DIR defaults to .cluster in the current directory. Binaries come from build.sh
# (built or reused from the cache). Nothing listens beyond loopback.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CLUSTER_DIR=${CLUSTER_DIR:-$PWD/.cluster}
CLUSTER_DIR=$(mkdir -p "$CLUSTER_DIR" && cd "$CLUSTER_DIR" && pwd)
COMPONENTS=(etcd kube-apiserver kube-controller-manager kube-scheduler kwok)
NODES=${CLUSTER_NODES:-2}
READY_TIMEOUT=${CLUSTER_READY_TIMEOUT:-120}

log() { printf '[cluster] %s\n' "$*" >&2; }

free_port() {
  python3 "$(dirname "${BASH_SOURCE[0]}")/../free-port.py"
}

running() { # component
  local pidfile="$CLUSTER_DIR/run/$1.pid"
  [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null
}

fail() { # component message
  log "FAILED: $1: $2"
  if [ -f "$CLUSTER_DIR/logs/$1.log" ]; then
    log "last lines of $CLUSTER_DIR/logs/$1.log:"
    tail -n 40 "$CLUSTER_DIR/logs/$1.log" >&2
  fi
  down
  exit 1
}

start() { # component binary args...
  local name=$1; shift
  # setsid: own process group, so `down` can stop it and everything it forked.
  setsid "$@" >"$CLUSTER_DIR/logs/$name.log" 2>&1 < /dev/null &
  echo $! >"$CLUSTER_DIR/run/$name.pid"
}

wait_for() { # component description command...
  local name=$1 what=$2; shift 2
  local deadline=$(( $(date +%s) + READY_TIMEOUT ))
  until "$@" >/dev/null 2>&1; do
    running "$name" || fail "$name" "exited while waiting for $what"
    [ "$(date +%s)" -lt "$deadline" ] || fail "$name" "not $what after ${READY_TIMEOUT}s"
    sleep 0.5
  done
  log "$name: $what ($(( $(date +%s) - t0 ))s)"
}

gen_certs() {
  local pki=$CLUSTER_DIR/pki
  mkdir -p "$pki"
  (
    cd "$pki"
    openssl ecparam -name prime256v1 -genkey -noout -out ca.key 2>/dev/null
    openssl req -x509 -new -key ca.key -days 7 -subj "/CN=streaming-token-operator-test-ca" -out ca.crt 2>/dev/null
    issue() { # name subject extensions
      openssl ecparam -name prime256v1 -genkey -noout -out "$1.key" 2>/dev/null
      openssl req -new -key "$1.key" -subj "$2" -out "$1.csr" 2>/dev/null
      printf '%s\n' "$3" >"$1.ext"
      openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days 7 \
        -extfile "$1.ext" -out "$1.crt" 2>/dev/null
      rm -f "$1.csr" "$1.ext"
    }
    issue apiserver "/CN=kube-apiserver" \
      "subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,IP:10.96.0.1
extendedKeyUsage=serverAuth"
    issue admin "/O=system:masters/CN=kubernetes-admin" "extendedKeyUsage=clientAuth"
    issue controller-manager "/CN=system:kube-controller-manager" "extendedKeyUsage=clientAuth"
    issue scheduler "/CN=system:kube-scheduler" "extendedKeyUsage=clientAuth"
    issue kwok "/O=system:masters/CN=kwok-controller" "extendedKeyUsage=clientAuth"
    # ServiceAccount token signing key: the TokenRequest API needs it.
    openssl genrsa -out sa.key 2048 2>/dev/null
    openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
  )
}

kubeconfig() { # file user
  local pki=$CLUSTER_DIR/pki
  cat >"$1" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: local
  cluster:
    server: https://127.0.0.1:$APISERVER_PORT
    certificate-authority: $pki/ca.crt
users:
- name: $2
  user:
    client-certificate: $pki/$2.crt
    client-key: $pki/$2.key
contexts:
- name: local
  context: {cluster: local, user: $2}
current-context: local
EOF
}

up() {
  if running kube-apiserver; then
    log "already running; kubeconfig: $CLUSTER_DIR/kubeconfig"
    return 0
  fi
  down_quiet
  local cache
  cache=$("$here/build.sh")
  local bin=$cache/bin
  mkdir -p "$CLUSTER_DIR"/{run,logs,etcd}
  t0=$(date +%s)
  gen_certs
  local pki=$CLUSTER_DIR/pki

  local etcd_port etcd_peer_port
  etcd_port=$(free_port); etcd_peer_port=$(free_port); APISERVER_PORT=$(free_port)
  local kcm_port scheduler_port kwok_port
  kcm_port=$(free_port); scheduler_port=$(free_port); kwok_port=$(free_port)
  echo "$APISERVER_PORT" >"$CLUSTER_DIR/run/apiserver.port"

  start etcd "$bin/etcd" --name=test --data-dir="$CLUSTER_DIR/etcd" \
    --listen-client-urls="http://127.0.0.1:$etcd_port" --advertise-client-urls="http://127.0.0.1:$etcd_port" \
    --listen-peer-urls="http://127.0.0.1:$etcd_peer_port" --initial-advertise-peer-urls="http://127.0.0.1:$etcd_peer_port" \
    --initial-cluster="test=http://127.0.0.1:$etcd_peer_port" \
    --listen-metrics-urls="" --unsafe-no-fsync=true --quota-backend-bytes=4294967296
  wait_for etcd "healthy" curl -sf "http://127.0.0.1:$etcd_port/health"

  # Audit log of every write: the operator's zero-writes tests count its requests here.
  cat >"$CLUSTER_DIR/audit-policy.yaml" <<'EOF'
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
# Reads by ServiceAccounts (the operator under test) are kept, so benchmarks can count every
# request a rotation costs; other readers (controllers, KWOK, the tests' admin) are not.
- level: Metadata
  userGroups: ["system:serviceaccounts"]
  verbs: [get, list, watch]
- level: None
  verbs: [get, list, watch]
- level: None
  resources: [{group: coordination.k8s.io, resources: [leases]}]
- level: Metadata
EOF
  local apiserver=("$bin/kube-apiserver" \
    --etcd-servers="http://127.0.0.1:$etcd_port" \
    --bind-address=127.0.0.1 --secure-port="$APISERVER_PORT" --advertise-address=127.0.0.1 \
    --endpoint-reconciler-type=none \
    --tls-cert-file="$pki/apiserver.crt" --tls-private-key-file="$pki/apiserver.key" \
    --client-ca-file="$pki/ca.crt" \
    --service-account-issuer="https://127.0.0.1:$APISERVER_PORT" \
    --service-account-key-file="$pki/sa.pub" --service-account-signing-key-file="$pki/sa.key" \
    --authorization-mode=Node,RBAC --service-cluster-ip-range=10.96.0.0/16 \
    --audit-policy-file="$CLUSTER_DIR/audit-policy.yaml" --audit-log-path="$CLUSTER_DIR/logs/audit.log" \
    --audit-log-maxsize=500 --audit-log-mode=blocking ${CLUSTER_APISERVER_FLAGS:-})
  # Kept so that `restart-apiserver` starts it again exactly so (tests that stop a member's).
  printf '%q ' "${apiserver[@]}" >"$CLUSTER_DIR/run/kube-apiserver.cmd"
  start kube-apiserver "${apiserver[@]}"
  kubeconfig "$CLUSTER_DIR/kubeconfig" admin
  kubeconfig "$CLUSTER_DIR/controller-manager.kubeconfig" controller-manager
  kubeconfig "$CLUSTER_DIR/scheduler.kubeconfig" scheduler
  kubeconfig "$CLUSTER_DIR/kwok.kubeconfig" kwok
  local kubectl=("$bin/kubectl" --kubeconfig="$CLUSTER_DIR/kubeconfig")
  wait_for kube-apiserver "ready" "${kubectl[@]}" get --raw /readyz

  start kube-controller-manager "$bin/kube-controller-manager" \
    --kubeconfig="$CLUSTER_DIR/controller-manager.kubeconfig" \
    --authentication-kubeconfig="$CLUSTER_DIR/controller-manager.kubeconfig" \
    --authorization-kubeconfig="$CLUSTER_DIR/controller-manager.kubeconfig" \
    --bind-address=127.0.0.1 --secure-port="$kcm_port" \
    --root-ca-file="$pki/ca.crt" --service-account-private-key-file="$pki/sa.key" \
    --use-service-account-credentials=true --leader-elect=false \
    --authorization-always-allow-paths=/healthz,/readyz,/livez,/metrics \
    --cluster-signing-cert-file="$pki/ca.crt" --cluster-signing-key-file="$pki/ca.key" \
    --concurrent-deployment-syncs=10 --concurrent-replicaset-syncs=10 \
    --kube-api-qps=100 --kube-api-burst=200
  start kube-scheduler "$bin/kube-scheduler" \
    --kubeconfig="$CLUSTER_DIR/scheduler.kubeconfig" \
    --authentication-kubeconfig="$CLUSTER_DIR/scheduler.kubeconfig" \
    --authorization-kubeconfig="$CLUSTER_DIR/scheduler.kubeconfig" \
    --bind-address=127.0.0.1 --secure-port="$scheduler_port" --leader-elect=false \
    --kube-api-qps=100 --kube-api-burst=200 \
    --authorization-always-allow-paths=/healthz,/readyz,/livez,/metrics
  wait_for kube-controller-manager "healthy" curl -sfk "https://127.0.0.1:$kcm_port/healthz"
  wait_for kube-scheduler "healthy" curl -sfk "https://127.0.0.1:$scheduler_port/healthz"
  wait_for kube-controller-manager "default ServiceAccount created" "${kubectl[@]}" get serviceaccount default -n default

  # KWOK's stages, with one change: a Job's pod labelled `stotest: runs` keeps running (as a job
  # whose work takes long) instead of completing at once, until its Job ends it (for example by
  # activeDeadlineSeconds) or it is deleted.
  mkdir -p "$CLUSTER_DIR/stages"
  local stage_args=()
  for f in "$cache"/stages/*.yaml; do
    local stage="$CLUSTER_DIR/stages/$(basename "$f")"
    if [ "$(basename "$f")" = pod-complete.yaml ]; then
      awk '{ print } /^    matchExpressions:$/ && !done { print "    - key: '"'"'.metadata.labels.stotest'"'"'"; print "      operator: '"'"'DoesNotExist'"'"'"; done = 1 }' "$f" >"$stage"
      grep -q "labels.stotest" "$stage" || { echo "[cluster] could not adjust $f" >&2; exit 1; }
    else
      cp "$f" "$stage"
    fi
    stage_args+=(--config="$stage")
  done
  start kwok "$bin/kwok" --kubeconfig="$CLUSTER_DIR/kwok.kubeconfig" "${stage_args[@]}" \
    --manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake --node-lease-duration-seconds=40 \
    --cidr=10.244.0.1/16 --node-ip=127.0.0.1 --server-address="127.0.0.1:$kwok_port"
  for i in $(seq 1 "$NODES"); do
    "${kubectl[@]}" apply -f - >/dev/null <<EOF
apiVersion: v1
kind: Node
metadata:
  name: kwok-node-$i
  annotations: {kwok.x-k8s.io/node: fake, node.alpha.kubernetes.io/ttl: "0"}
  labels:
    kubernetes.io/hostname: kwok-node-$i
    kubernetes.io/os: linux
    kubernetes.io/arch: amd64
    type: kwok
status:
  allocatable: {cpu: "64", memory: 256Gi, pods: "1000"}
  capacity: {cpu: "64", memory: 256Gi, pods: "1000"}
EOF
  done
  wait_for kwok "nodes Ready" "${kubectl[@]}" wait --for=condition=Ready node --all --timeout=1s
  wait_for kube-controller-manager "node taints lifted" \
    bash -c "[ -z \"\$('${bin}/kubectl' --kubeconfig='$CLUSTER_DIR/kubeconfig' get nodes -o jsonpath='{.items[*].spec.taints}')\" ]"
  echo "$bin" >"$CLUSTER_DIR/run/bin"
  log "control plane ready in $(( $(date +%s) - t0 ))s; export KUBECONFIG=$CLUSTER_DIR/kubeconfig"
}

down_quiet() {
  [ -d "$CLUSTER_DIR/run" ] || { rm -rf "${CLUSTER_DIR:?}"/{pki,etcd,logs,run}; return 0; }
  local i pid
  # Reverse order: the apiserver's clients first, etcd last.
  for (( i=${#COMPONENTS[@]}-1; i>=0; i-- )); do
    local pidfile="$CLUSTER_DIR/run/${COMPONENTS[$i]}.pid"
    [ -f "$pidfile" ] || continue
    pid=$(cat "$pidfile")
    kill -TERM -- "-$pid" 2>/dev/null || true
  done
  for (( i=${#COMPONENTS[@]}-1; i>=0; i-- )); do
    local pidfile="$CLUSTER_DIR/run/${COMPONENTS[$i]}.pid"
    [ -f "$pidfile" ] || continue
    pid=$(cat "$pidfile")
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL -- "-$pid" 2>/dev/null || true
  done
  rm -rf "${CLUSTER_DIR:?}"/{pki,etcd,logs,run} "$CLUSTER_DIR"/*.kubeconfig "$CLUSTER_DIR/kubeconfig" "$CLUSTER_DIR/audit-policy.yaml"
}

down() {
  down_quiet
  log "stopped; state removed from $CLUSTER_DIR"
}

# Stops the kube-apiserver alone (etcd and the rest keep running), as an outage would.
stop_apiserver() {
  local pidfile="$CLUSTER_DIR/run/kube-apiserver.pid"
  [ -f "$pidfile" ] || { log "kube-apiserver is not running"; return 0; }
  local pid; pid=$(cat "$pidfile")
  kill -TERM -- "-$pid" 2>/dev/null || true
  for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL -- "-$pid" 2>/dev/null || true
  rm -f "$pidfile"
  log "kube-apiserver stopped"
}

# Starts the kube-apiserver `stop-apiserver` stopped again, with the same flags and port.
start_apiserver() {
  running kube-apiserver && return 0
  local cmd
  eval "cmd=( $(cat "$CLUSTER_DIR/run/kube-apiserver.cmd") )"
  t0=$(date +%s)
  start kube-apiserver "${cmd[@]}"
  wait_for kube-apiserver "ready again" "$(cat "$CLUSTER_DIR/run/bin")/kubectl" --kubeconfig="$CLUSTER_DIR/kubeconfig" get --raw /readyz
}

status() {
  local c
  for c in "${COMPONENTS[@]}"; do
    if running "$c"; then echo "$c: running (pid $(cat "$CLUSTER_DIR/run/$c.pid"))"; else echo "$c: stopped"; fi
  done
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) status ;;
  stop-apiserver) stop_apiserver ;;
  start-apiserver) start_apiserver ;;
  *) echo "usage: $0 up|down|status|stop-apiserver|start-apiserver" >&2; exit 2 ;;
esac
