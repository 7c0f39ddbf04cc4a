#!/usr/bin/env bash
# Builds (or reuses) the kstatus helper: sigs.k8s.io/cli-utils/pkg/kstatus, the library Flux
# and cli-utils use to judge a resource's health, pinned by go.mod/go.sum beside this script.
# Cached outside the clone in ${STO_CACHE_DIR:-~/.cache/streaming-token-operator}/kstatus-<key>/,
# <key> hashing the Go version and this recipe. Prints the binary's path on stdout.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
export GOTOOLCHAIN=local GOFLAGS=-mod=readonly CGO_ENABLED=0
cache_root=${STO_CACHE_DIR:-$HOME/.cache/streaming-token-operator}
key=$( { go version; cd "$here" && sha256sum go.mod go.sum main.go build.sh; } | sha256sum | cut -c1-16)
out="$cache_root/kstatus-$key"
if [ -x "$out/kstatus" ]; then
  echo "$out/kstatus"
  exit 0
fi
mkdir -p "$cache_root"
staging=$(mktemp -d "$cache_root/.build-kstatus-$key.XXXXXX")
trap 'rm -rf "$staging"' EXIT
start=$(date +%s)
(cd "$here" && go build -trimpath -buildvcs=false -ldflags "-s -w" -o "$staging/kstatus" .)
echo "[kstatus] built in $(( $(date +%s) - start ))s" >&2
rm -rf "$out"
mv "$staging" "$out"
trap - EXIT
echo "$out/kstatus"
