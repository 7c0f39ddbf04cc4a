#!/usr/bin/env bash
# A real Kubernetes node next to the KWOK nodes of tests/controlplane/cluster.sh: a private
# containerd (Debian's, with runc) and the pinned kubelet, registering node real-node-1, so tests
# can run real processes in pods. See tests/node/README.md.
#
#   node.sh up       start containerd and the kubelet, import the local images, wait until the
#                    node is Ready (the control plane of $CLUSTER_DIR must be up)
#   node.sh down     delete the node's pods, stop everything, remove the state; safe to call
#                    twice, after a failed up and after cluster.sh down (call it first, though)
#   node.sh status   print which parts are running
#   node.sh logs NAMESPACE POD [CONTAINER]
#                    print a container's log from the node's files (never `kubectl logs`: the
#                    API server would dial the node's address, and the kubelet listens on
#                    127.0.0.1 only)
#   node.sh import TARBALL
#                    import an image tarball (docker-archive or OCI) into the node's containerd,
#                    for pods with imagePullPolicy: Never (e.g. tests/image/build.sh's)
#   node.sh kill-container CONTAINER_ID
#                    SIGKILL a container's process through the node's containerd (the id of a
#                    pod's status.containerStatuses[].containerID, with or without
#                    containerd://): the kubelet sees it exit with 137 and restarts it
#
# The node: label streamingtoken.io/test-node=real, taint streamingtoken.io/real-node=true:NoSchedule
# (only pods tolerating it land there), images localhost/sto/pause:1 and localhost/sto/client:1
# (pods use imagePullPolicy: Never). Pods should use hostNetwork: true to reach servers on the
# host's 127.0.0.1; other pods get an address on an isolated bridge with no route anywhere.
#
# CLUSTER_DIR as for cluster.sh (default .cluster in the current directory); the node's state is
# in $CLUSTER_DIR/node/, its logs in $CLUSTER_DIR/logs/{containerd,kubelet}.log. Needs root.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CLUSTER_DIR=${CLUSTER_DIR:-$PWD/.cluster}
CLUSTER_DIR=$(mkdir -p "$CLUSTER_DIR" && cd "$CLUSTER_DIR" && pwd)
NODE_NAME=${NODE_NAME:-real-node-1}
NODE_DIR=$CLUSTER_DIR/node
READY_TIMEOUT=${NODE_READY_TIMEOUT:-120}
# The kubelet's pod resync period: how late a mounted Secret or ConfigMap file follows an update
# (measured 7-15 s with 10s; the kubelet's default 1m gives over a minute).
SYNC_FREQUENCY=${NODE_SYNC_FREQUENCY:-10s}
SOCK=$NODE_DIR/containerd/containerd.sock
RUNC_ROOT=$NODE_DIR/runc
BRIDGE=sto-cni0
POD_SUBNET=10.213.0.0/24
LABEL=streamingtoken.io/test-node=real
TAINT_KEY=streamingtoken.io/real-node

log() { printf '[node] %s\n' "$*" >&2; }
[ "$(id -u)" = 0 ] || { log "needs root (containerd, runc, mounts)"; exit 1; }

# A process that exists and is no zombie (PID 1 here may be slow to reap the orphans).
alive() { # pid
  local state
  state=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1) || return 1
  [ -n "$state" ] && [ "$state" != Z ]
}

running() { # component
  local pidfile="$NODE_DIR/run/$1.pid"
  [ -f "$pidfile" ] && alive "$(cat "$pidfile")"
}

kubectl_cmd() {
  local bin
  bin=$(cat "$CLUSTER_DIR/run/bin" 2>/dev/null) || return 1
  [ -f "$CLUSTER_DIR/kubeconfig" ] || return 1
  "$bin/kubectl" --kubeconfig="$CLUSTER_DIR/kubeconfig" --request-timeout=10s "$@"
}

apiserver_up() { kubectl_cmd get --raw /readyz >/dev/null 2>&1; }

fail() { # component message
  log "FAILED: $1: $2"
  if [ -f "$CLUSTER_DIR/logs/$1.log" ]; then
    log "last lines of $CLUSTER_DIR/logs/$1.log:"
    tail -n 40 "$CLUSTER_DIR/logs/$1.log" >&2
  fi
  down_quiet
  exit 1
}

start() { # component binary args...
  local name=$1; shift
  # setsid: own process group, so `down` can stop it and everything it forked.
  setsid "$@" >"$CLUSTER_DIR/logs/$name.log" 2>&1 </dev/null &
  echo $! >"$NODE_DIR/run/$name.pid"
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

stop() { # component [seconds to wait before SIGKILL]
  local pidfile="$NODE_DIR/run/$1.pid" pid
  [ -f "$pidfile" ] || return 0
  pid=$(cat "$pidfile")
  kill -TERM -- "-$pid" 2>/dev/null || true
  for _ in $(seq 1 $(( ${2:-10} * 10 ))); do alive "$pid" || break; sleep 0.1; done
  kill -KILL -- "-$pid" 2>/dev/null || true
  for _ in $(seq 1 50); do alive "$pid" || break; sleep 0.1; done
  rm -f "$pidfile"
}

# containerd's shims run in process groups of their own; they are found by the private socket
# address on their command line (unique to this node) and stopped by PID.
shim_pids() {
  local f pid
  for f in /proc/[0-9]*/cmdline; do
    pid=${f#/proc/}; pid=${pid%/cmdline}
    tr '\0' '\n' 2>/dev/null <"$f" | grep -qxF -- "$SOCK" && echo "$pid"
  done
  return 0
}

gen_config() {
  local pki=$NODE_DIR/pki apiserver_port
  apiserver_port=$(cat "$CLUSTER_DIR/run/apiserver.port")
  mkdir -p "$pki" "$NODE_DIR"/{containerd,cni/net.d,cni/ipam,kubelet,pod-logs,run} "$RUNC_ROOT"

  # The kubelet's client certificate, issued by the cluster's CA as cluster.sh issues the others
  # (the Node authorizer knows a node by CN system:node:<name>, O system:nodes).
  (
    cd "$pki"
    openssl ecparam -name prime256v1 -genkey -noout -out kubelet.key 2>/dev/null
    openssl req -new -key kubelet.key -subj "/O=system:nodes/CN=system:node:$NODE_NAME" -out kubelet.csr 2>/dev/null
    printf 'extendedKeyUsage=clientAuth\n' >kubelet.ext
    openssl x509 -req -in kubelet.csr -CA "$CLUSTER_DIR/pki/ca.crt" -CAkey "$CLUSTER_DIR/pki/ca.key" \
      -CAserial ca.srl -CAcreateserial -days 7 -extfile kubelet.ext -out kubelet.crt 2>/dev/null
    rm -f kubelet.csr kubelet.ext
  )
  cat >"$NODE_DIR/kubelet.kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: local
  cluster:
    server: https://127.0.0.1:$apiserver_port
    certificate-authority: $CLUSTER_DIR/pki/ca.crt
users:
- name: kubelet
  user:
    client-certificate: $pki/kubelet.crt
    client-key: $pki/kubelet.key
contexts:
- name: local
  context: {cluster: local, user: kubelet}
current-context: local
EOF

  # CNI: the CRI plugin reports the network ready only with a valid config. Pods with
  # hostNetwork: true never use it; others get an address on a bridge without gateway, masquerade
  # or routes: isolated.
  cat >"$NODE_DIR/cni/net.d/10-sto.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "sto-real-node",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$BRIDGE",
      "isGateway": false,
      "ipMasq": false,
      "hairpinMode": false,
      "ipam": {"type": "host-local", "ranges": [[{"subnet": "$POD_SUBNET"}]], "dataDir": "$NODE_DIR/cni/ipam"}
    }
  ]
}
EOF

  # containerd: everything private to this node (root, state, socket, runc's root, CNI config).
  # restrict_oom_score_adj: this machine refuses a negative oom_score_adj, and without it every
  # sandbox fails with runc's "can't get final child's PID from pipe: EOF".
  cat >"$NODE_DIR/containerd/config.toml" <<EOF
version = 2
root = "$NODE_DIR/containerd/root"
state = "$NODE_DIR/containerd/state"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"]

[grpc]
  address = "$SOCK"

[ttrpc]
  address = ""

[debug]
  address = ""

[metrics]
  address = ""

[plugins]
  [plugins."io.containerd.internal.v1.opt"]
    path = "$NODE_DIR/containerd/opt"
  [plugins."io.containerd.grpc.v1.cri"]
    sandbox_image = "$(cat "$cache/images/pause.ref")"
    restrict_oom_score_adj = true
    disable_apparmor = true
    enable_selinux = false
    stream_server_address = "127.0.0.1"
    stream_server_port = "0"
    [plugins."io.containerd.grpc.v1.cri".containerd]
      snapshotter = "overlayfs"
      default_runtime_name = "runc"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
        runtime_type = "io.containerd.runc.v2"
        [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
          SystemdCgroup = false
          Root = "$RUNC_ROOT"
    [plugins."io.containerd.grpc.v1.cri".cni]
      bin_dir = "/usr/lib/cni"
      conf_dir = "$NODE_DIR/cni/net.d"
EOF

  # The kubelet. syncFrequency (here 10s unless NODE_SYNC_FREQUENCY says otherwise; the kubelet's
  # own default is 1m): a mounted Secret's file follows an update within about that time plus a
  # few seconds. It serves on 127.0.0.1 only, on free ports. Image GC and evictions are
  # effectively off: the images cannot be pulled back. No iptables chains (makeIPTablesUtilChains).
  cat >"$NODE_DIR/kubelet-config.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: 127.0.0.1
port: $(free_port)
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: $KUBELET_HEALTHZ_PORT
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: false}
  x509: {clientCAFile: $CLUSTER_DIR/pki/ca.crt}
authorization: {mode: AlwaysAllow}
containerRuntimeEndpoint: unix://$SOCK
failCgroupV1: false
cgroupDriver: cgroupfs
cgroupsPerQOS: false
enforceNodeAllocatable: []
failSwapOn: false
oomScoreAdj: 0
syncFrequency: $SYNC_FREQUENCY
podLogsDir: $NODE_DIR/pod-logs
registerWithTaints:
- {key: $TAINT_KEY, value: "true", effect: NoSchedule}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: 50Mi, nodefs.available: 1%, imagefs.available: 1%, nodefs.inodesFree: 1%}
maxPods: 50
serializeImagePulls: false
makeIPTablesUtilChains: false
EOF
}

# The kubelet sets six kernel tunables it wants (vm.overcommit_memory=1, kernel.panic=10,
# kernel.panic_on_oops=1, ...) on the host; they are saved before it starts and put back by down.
SYSCTLS=(vm.overcommit_memory vm.panic_on_oom kernel.panic kernel.panic_on_oops
  kernel.keys.root_maxkeys kernel.keys.root_maxbytes)
save_sysctls() {
  [ -f "$NODE_DIR/run/sysctl.saved" ] || sysctl -e "${SYSCTLS[@]}" >"$NODE_DIR/run/sysctl.saved"
}
restore_sysctls() {
  local saved=$NODE_DIR/run/sysctl.saved
  [ -f "$saved" ] || return 0
  sysctl -q -p "$saved" >/dev/null || log "could not restore the kernel tunables of $saved"
  rm -f "$saved"
}

free_port() {
  python3 "$(dirname "${BASH_SOURCE[0]}")/../free-port.py"
}

node_ready() {
  [ "$(kubectl_cmd get node "$NODE_NAME" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}')" = True ]
}

up() {
  if running kubelet; then
    log "already running (node $NODE_NAME)"
    return 0
  fi
  if [ ! -f "$CLUSTER_DIR/run/apiserver.port" ] || ! apiserver_up; then
    log "the control plane of $CLUSTER_DIR is not up: run tests/controlplane/cluster.sh up first"
    exit 1
  fi
  down_quiet
  "$here/install.sh"
  cache=$("$here/build.sh")
  t0=$(date +%s)
  mkdir -p "$CLUSTER_DIR/logs" "$NODE_DIR/run"
  KUBELET_HEALTHZ_PORT=$(free_port)
  gen_config

  start containerd containerd --config "$NODE_DIR/containerd/config.toml" --log-level info
  local ctr=(ctr --address "$SOCK" -n k8s.io)
  wait_for containerd "serving" "${ctr[@]}" version
  local image
  for image in pause client; do
    "${ctr[@]}" images import "$cache/images/$image.tar" >/dev/null 2>"$NODE_DIR/run/import.err" ||
      { cat "$NODE_DIR/run/import.err" >&2; fail containerd "importing $cache/images/$image.tar"; }
  done
  log "containerd: images $("${ctr[@]}" images ls -q | grep -v '^sha256:' | tr '\n' ' ')($(( $(date +%s) - t0 ))s)"

  save_sysctls
  # No --node-ip: the kubelet refuses a loopback one. It may pick the host's own address as the
  # node's InternalIP: nothing must dial it (no kubectl logs/exec/port-forward, no probes without
  # host: 127.0.0.1 on host-network pods).
  start kubelet "$cache/bin/kubelet" --config="$NODE_DIR/kubelet-config.yaml" \
    --kubeconfig="$NODE_DIR/kubelet.kubeconfig" \
    --root-dir="$NODE_DIR/kubelet" --cert-dir="$NODE_DIR/kubelet/pki" \
    --hostname-override="$NODE_NAME" --node-labels="$LABEL" --v=2
  wait_for kubelet "healthy" curl -sf "http://127.0.0.1:$KUBELET_HEALTHZ_PORT/healthz"
  wait_for kubelet "node $NODE_NAME Ready" node_ready
  echo "$cache" >"$NODE_DIR/run/cache"
  log "node $NODE_NAME ready in $(( $(date +%s) - t0 ))s"
}

# Pods first (while the kubelet runs, so it stops their containers and tears their sandboxes down),
# then the kubelet, containerd and every leftover: shims, runc containers, mounts, the bridge.
down_quiet() {
  [ -d "$NODE_DIR" ] || return 0
  if apiserver_up; then
    if running kubelet && running containerd; then
      # Cordoned first, so that controllers' replacements of the deleted pods stay Pending.
      kubectl_cmd cordon "$NODE_NAME" >/dev/null 2>&1 || true
      kubectl_cmd delete pods --all-namespaces --field-selector "spec.nodeName=$NODE_NAME" \
        --wait=false >/dev/null 2>&1 || true
      local deadline=$(( $(date +%s) + 60 ))
      while [ -n "$(kubectl_cmd get pods --all-namespaces --field-selector "spec.nodeName=$NODE_NAME" -o name 2>/dev/null)" ]; do
        [ "$(date +%s)" -lt "$deadline" ] || { log "pods on $NODE_NAME still there after 60s"; break; }
        sleep 0.5
      done
    fi
    # Whatever is left cannot be stopped by a kubelet any more.
    kubectl_cmd delete pods --all-namespaces --field-selector "spec.nodeName=$NODE_NAME" \
      --grace-period=0 --force >/dev/null 2>&1 || true
    kubectl_cmd delete node "$NODE_NAME" --ignore-not-found >/dev/null 2>&1 || true
  fi
  stop kubelet 15
  restore_sysctls
  if running containerd; then
    local ctr=(ctr --address "$SOCK" -n k8s.io) id
    for id in $("${ctr[@]}" tasks ls -q 2>/dev/null); do
      "${ctr[@]}" tasks kill -s SIGKILL "$id" >/dev/null 2>&1 || true
    done
    sleep 0.2
    for id in $("${ctr[@]}" tasks ls -q 2>/dev/null); do
      "${ctr[@]}" tasks delete -f "$id" >/dev/null 2>&1 || true
    done
  fi
  stop containerd 10
  local pid address
  for pid in $(shim_pids); do kill -KILL "$pid" 2>/dev/null || true; done
  for _ in $(seq 1 50); do [ -z "$(shim_pids)" ] && break; sleep 0.1; done
  # A killed shim leaves its socket in /run/containerd/s (a fixed path); each task's directory
  # names it.
  for address in "$NODE_DIR"/containerd/state/io.containerd.runtime.v2.task/*/*/address; do
    [ -f "$address" ] || continue
    address=$(cat "$address"); address=${address#unix://}
    case $address in /run/containerd/s/*) rm -f "$address" ;; esac
  done
  if [ -d "$RUNC_ROOT" ]; then
    local root id
    for root in "$RUNC_ROOT"/*/; do
      [ -d "$root" ] || continue
      for id in $(runc --root "$root" list -q 2>/dev/null); do
        runc --root "$root" delete -f "$id" >/dev/null 2>&1 || true
      done
    done
  fi
  # Network namespaces of pods without hostNetwork (made by containerd in a fixed directory), as
  # the sandboxes' OCI specs name them, and the CNI library's cache of their results (named
  # <network>-<sandbox id>-<interface>).
  local spec netns
  for spec in "$NODE_DIR"/containerd/state/io.containerd.runtime.v2.task/*/*/config.json; do
    [ -f "$spec" ] || continue
    for netns in $(grep -o '"/\(var/\)\?run/netns/cni-[0-9a-f-]*"' "$spec" | tr -d '"'); do
      umount "$netns" 2>/dev/null || true
      rm -f "$netns"
    done
    rm -f /var/lib/cni/results/*-"$(basename "$(dirname "$spec")")"-*
  done
  # Mounts under the node's directory, deepest first: Secret/projected volumes of the kubelet,
  # container root filesystems and sandbox /dev/shm of containerd.
  local target
  while read -r target; do
    umount "$target" 2>/dev/null || umount -l "$target" 2>/dev/null || log "cannot unmount $target"
  done < <(findmnt -rn -o TARGET | grep -F "$NODE_DIR/" | LC_ALL=C sort -r)
  if ip link show "$BRIDGE" >/dev/null 2>&1; then ip link delete "$BRIDGE" || true; fi
  # The kubelet links every container's log into /var/log/containers (a fixed path).
  if [ -d /var/log/containers ]; then
    find /var/log/containers -maxdepth 1 -type l -lname "$NODE_DIR/*" -delete 2>/dev/null || true
  fi
  rm -rf --one-file-system "${NODE_DIR:?}" || log "could not remove all of $NODE_DIR"
  # Fixed paths the kubelet, the shims and CNI use whatever their configuration: the device-plugin
  # socket, the log links' directory, the shims' sockets, the containers' parent cgroups, CNI's
  # cache, network namespaces. Directories only when empty.
  rm -f /var/lib/kubelet/device-plugins/kubelet.sock
  rmdir /var/lib/kubelet/device-plugins /var/lib/kubelet /var/log/containers \
    /run/containerd/s /run/containerd /sys/fs/cgroup/*/k8s.io \
    /var/lib/cni/results /var/lib/cni /run/netns 2>/dev/null || true
}

down() {
  down_quiet
  log "stopped; state removed from $NODE_DIR"
}

status() {
  local c
  for c in containerd kubelet; do
    if running "$c"; then echo "$c: running (pid $(cat "$NODE_DIR/run/$c.pid"))"; else echo "$c: stopped"; fi
  done
}

logs() { # namespace pod [container]
  local ns=${1:?usage: node.sh logs NAMESPACE POD [CONTAINER]} pod=${2:?usage: node.sh logs NAMESPACE POD [CONTAINER]}
  local dir
  for dir in "$NODE_DIR/pod-logs/${ns}_${pod}_"*/; do
    [ -d "$dir" ] || { log "no logs of $ns/$pod on $NODE_NAME"; return 1; }
    if [ -n "${3:-}" ]; then cat "$dir$3"/*.log; else cat "$dir"*/*.log; fi
  done
}

import_image() { # tarball
  local tarball=${1:?usage: node.sh import TARBALL}
  running containerd || { log "containerd of $NODE_DIR is not running"; exit 1; }
  ctr --address "$SOCK" -n k8s.io images import "$tarball" >/dev/null
  log "imported $tarball"
}

kill_container() { # id
  local id=${1:?usage: node.sh kill-container CONTAINER_ID}
  id=${id#containerd://}
  running containerd || { log "containerd of $NODE_DIR is not running"; exit 1; }
  ctr --address "$SOCK" -n k8s.io tasks kill -s SIGKILL "$id"
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) status ;;
  logs) shift; logs "$@" ;;
  import) shift; import_image "$@" ;;
  kill-container) shift; kill_container "$@" ;;
  *) echo "usage: $0 up|down|status|logs NAMESPACE POD [CONTAINER]|import TARBALL|kill-container ID" >&2; exit 2 ;;
esac
