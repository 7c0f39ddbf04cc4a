#!/usr/bin/env bash
# Starts and stops the CNCF distribution registry (built by `tests/go-helper.sh registry`) on
# 127.0.0.1, plain HTTP, no authentication, its storage in a temp directory, for publishing the
# chart (helm push oci://...) and the operator's image (crane) in tests and dry-run releases.
#   tests/registry/registry.sh up DIR     start it (DIR: its state; created, must not hold one
#                                         running already); prints its address, 127.0.0.1:PORT
#   tests/registry/registry.sh down DIR   stop it and remove DIR (a no-op when nothing runs)
# DIR holds config.yml, data/ (the blobs), registry.log, pid and address.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
command=${1:?usage: tests/registry/registry.sh up|down DIR}
dir=${2:?usage: tests/registry/registry.sh up|down DIR}
log() { printf '[registry] %s\n' "$*" >&2; }

case "$command" in
  up)
    if [ -f "$dir/pid" ] && kill -0 "$(cat "$dir/pid")" 2>/dev/null; then
      log "a registry already runs from $dir (pid $(cat "$dir/pid")): tests/registry/registry.sh down $dir"
      exit 1
    fi
    binary=$("$here/../go-helper.sh" registry)
    mkdir -p "$dir/data"
    dir=$(cd "$dir" && pwd)
    # A free port from the kernel; the registry binds it a moment later (the same way as
    # tests/controlplane/cluster.sh).
    port=$(python3 "$(dirname "${BASH_SOURCE[0]}")/../free-port.py")
    cat >"$dir/config.yml" <<CONFIG
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $dir/data
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$port
  secret: $(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
CONFIG
    # No tracing exporter: the registry's OpenTelemetry set-up would otherwise send spans to
    # an OTLP endpoint on localhost.
    OTEL_TRACES_EXPORTER=none OTEL_SDK_DISABLED=true \
      setsid "$binary" serve "$dir/config.yml" >"$dir/registry.log" 2>&1 </dev/null &
    echo $! >"$dir/pid"
    for _ in $(seq 1 100); do
      if curl -sf "http://127.0.0.1:$port/v2/" >/dev/null 2>&1; then
        echo "127.0.0.1:$port" >"$dir/address"
        log "up on 127.0.0.1:$port (storage $dir/data, log $dir/registry.log)"
        echo "127.0.0.1:$port"
        exit 0
      fi
      kill -0 "$(cat "$dir/pid")" 2>/dev/null || break
      sleep 0.1
    done
    tail -n 20 "$dir/registry.log" >&2 || true
    log "the registry did not answer on 127.0.0.1:$port"
    kill "$(cat "$dir/pid")" 2>/dev/null || true
    exit 1
    ;;
  down)
    if [ -f "$dir/pid" ]; then
      pid=$(cat "$dir/pid")
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -rf "$dir"
    ;;
  *)
    echo "usage: tests/registry/registry.sh up|down DIR" >&2
    exit 2
    ;;
esac
