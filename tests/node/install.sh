#!/usr/bin/env bash
# Installs what a real test node needs from Debian's packages: containerd (CRI runtime, with
# `ctr`), runc, the CNI plugins (bridge, host-local, loopback under /usr/lib/cni) and gcc for
# the static pause program (tests/node/build.sh). A no-op when everything is installed.
# Needs root (apt-get); runs `apt-get update` only when something is missing.
set -euo pipefail
packages=(containerd runc containernetworking-plugins gcc libc6-dev)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "[node] installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  # The package's service is not wanted: node.sh runs a private containerd. policy-rc.d keeps
  # maintainer scripts from starting it where an init system exists.
  rc=/usr/sbin/policy-rc.d
  own_rc=false
  if [ ! -e "$rc" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$rc" && chmod +x "$rc" && own_rc=true
  fi
  status=0
  { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}"; } >&2 || status=$?
  if $own_rc; then rm -f "$rc"; fi
  [ $status -eq 0 ] || { echo "[node] apt-get failed (exit $status)" >&2; exit $status; }
fi
for tool in containerd ctr runc /usr/lib/cni/bridge /usr/lib/cni/host-local /usr/lib/cni/loopback gcc; do
  command -v "$tool" >/dev/null || { echo "[node] missing after install: $tool" >&2; exit 1; }
done
