#!/usr/bin/env bash
# Builds (or reuses) the Argo CD health helper: github.com/argoproj/argo-cd/v3/util/lua, the Lua runtime Argo CD
# evaluates resource health checks with, pinned by go.mod/go.sum beside this script (a cold build
# takes about 3 minutes).
# Cached outside the clone in ${STO_CACHE_DIR:-~/.cache/streaming-token-operator}/argocd-health-<key>/,
# <key> hashing the Go version and this recipe. Prints the binary's path on stdout.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
export GOTOOLCHAIN=local GOFLAGS=-mod=readonly CGO_ENABLED=0
cache_root=${STO_CACHE_DIR:-$HOME/.cache/streaming-token-operator}
key=$( { go version; cd "$here" && sha256sum go.mod go.sum main.go build.sh; } | sha256sum | cut -c1-16)
out="$cache_root/argocd-health-$key"
if [ -x "$out/argocd-health" ]; then
  echo "$out/argocd-health"
  exit 0
fi
mkdir -p "$cache_root"
staging=$(mktemp -d "$cache_root/.build-argocd-health-$key.XXXXXX")
trap 'rm -rf "$staging"' EXIT
start=$(date +%s)
(cd "$here" && go build -trimpath -buildvcs=false -ldflags "-s -w" -o "$staging/argocd-health" .)
echo "[argocd-health] built in $(( $(date +%s) - start ))s" >&2
rm -rf "$out"
mv "$staging" "$out"
trap - EXIT
echo "$out/argocd-health"
