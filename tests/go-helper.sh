#!/usr/bin/env bash
# Builds (or reuses) one of the Go test helpers under tests/ (kstatus, argocd-health, promtool): a
# small main package whose go.mod/go.sum pin the real library it runs (kstatus: cli-utils, about
# 10 s cold; argocd-health: Argo CD's Lua runtime, about 3 minutes cold), or, when the helper's
# directory has a `tool` file, the real command that file names, pinned by go.mod's `tool`
# directive (promtool: Prometheus' own). Cached outside the clone in
#   ${STO_CACHE_DIR:-~/.cache/streaming-token-operator}/<name>-<key>/<name>
# where <key> hashes the Go version, the helper's files and this script. Prints the binary's path.
set -euo pipefail
name=${1:?usage: tests/go-helper.sh kstatus|argocd-health|promtool}
tests=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
here="$tests/$name"
[ -f "$here/go.mod" ] || { echo "no Go helper tests/$name" >&2; exit 2; }
export GOTOOLCHAIN=local GOFLAGS=-mod=readonly CGO_ENABLED=0
cache_root=${STO_CACHE_DIR:-$HOME/.cache/streaming-token-operator}
key=$( { go version; cd "$here" && sha256sum go.mod go.sum $(ls main.go tool files 2>/dev/null); sha256sum "$tests/go-helper.sh"; } | sha256sum | cut -c1-16)
out="$cache_root/$name-$key"
if [ -x "$out/$name" ]; then
  echo "$out/$name"
  exit 0
fi
mkdir -p "$cache_root"
staging=$(mktemp -d "$cache_root/.build-$name-$key.XXXXXX")
trap 'rm -rf "$staging"' EXIT
start=$(date +%s)
package=.
[ -f "$here/tool" ] && package=$(cat "$here/tool")
(cd "$here" && go build -trimpath -buildvcs=false -ldflags "-s -w" -o "$staging/$name" "$package")
# A `files` list: files of the pinned modules to keep next to the binary (for example a
# controller's CRDs), as paths inside the module cache.
if [ -f "$here/files" ]; then
  modcache=$(cd "$here" && go env GOMODCACHE)
  while read -r pattern; do
    [ -n "$pattern" ] || continue
    mkdir -p "$staging/files"
    # shellcheck disable=SC2086
    cp $modcache/$pattern "$staging/files/"
  done <"$here/files"
fi
echo "[$name] built in $(( $(date +%s) - start ))s" >&2
rm -rf "$out"
mv "$staging" "$out"
trap - EXIT
echo "$out/$name"
