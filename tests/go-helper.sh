#!/usr/bin/env bash
# Builds (or reuses) one of the Go test helpers under tests/ (kstatus, argocd-health, promtool,
# argo-rollouts, platform, registry): a small main package whose go.mod/go.sum pin the real
# library it runs (kstatus: cli-utils, about 10 s cold; argocd-health: Argo CD's Lua runtime,
# about 3 minutes cold), or, when the helper's directory has a `tool` file, the real command that
# file names, pinned by go.mod's `tool` directive. Cached outside the clone in
#   ${STO_CACHE_DIR:-~/.cache/streaming-token-operator}/<name>-<key>/<name>
# where <key> hashes the Go version, the helper's files and this script. Prints the binary's path.
#
# A helper whose directory has a `debian` file (promtool: Debian's `prometheus` package) is taken
# from that Debian package when the package's version is at least the file's minimum: the .deb is
# fetched with `apt-get download` (root runs `apt-get update` first when apt knows no version)
# and the one binary extracted into
#   ${STO_CACHE_DIR:-...}/<name>-deb-<key>/<name>
# where <key> hashes the package's version, the `debian` file and this script: seconds instead of
# the Go build's minutes (promtool: about 5.5 minutes cold on 2 cores). Anything missing (no apt,
# no such package, an older version, a binary that does not run) falls back to the Go build, and
# so does STO_GO_HELPER_FROM_SOURCE=1.
set -euo pipefail
name=${1:?usage: tests/go-helper.sh kstatus|argocd-health|promtool|argo-rollouts|platform|registry}
tests=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
here="$tests/$name"
[ -f "$here/go.mod" ] || { echo "no Go helper tests/$name" >&2; exit 2; }
export GOTOOLCHAIN=local GOFLAGS=-mod=readonly CGO_ENABLED=0
# The compiler collects garbage less often (see tests/prebuild.sh); not part of any cache key.
export GOGC=${GOGC:-400}
cache_root=${STO_CACHE_DIR:-$HOME/.cache/streaming-token-operator}
log() { printf '[%s] %s\n' "$name" "$*" >&2; }

# Prints the path of the helper taken from its Debian package, or fails (saying why on stderr).
from_debian() {
  local package path minimum version deb_key out staging binary got
  read -r package path minimum < <(grep -v '^#' "$here/debian" | grep -m1 .)
  if ! command -v apt-cache >/dev/null || ! command -v dpkg-deb >/dev/null; then
    log "no apt here"
    return 1
  fi
  version=$(apt-cache policy "$package" 2>/dev/null | awk '/Candidate:/ { print $2 }')
  if { [ -z "$version" ] || [ "$version" = "(none)" ]; } && [ "$(id -u)" = 0 ]; then
    log "apt knows no version of $package: apt-get update"
    apt-get update -qq >/dev/null 2>&1 || true
    version=$(apt-cache policy "$package" 2>/dev/null | awk '/Candidate:/ { print $2 }')
  fi
  if [ -z "$version" ] || [ "$version" = "(none)" ]; then
    log "Debian has no package $package here"
    return 1
  fi
  dpkg --compare-versions "$version" ge "$minimum" ||
    { log "Debian's $package is $version, older than $minimum"; return 1; }
  deb_key=$( { echo "$package=$version"; sha256sum "$here/debian" "$tests/go-helper.sh"; } | sha256sum | cut -c1-16)
  out="$cache_root/$name-deb-$deb_key"
  if [ -x "$out/$name" ]; then
    echo "$out/$name"
    return 0
  fi
  mkdir -p "$cache_root"
  staging=$(mktemp -d "$cache_root/.fetch-$name-$deb_key.XXXXXX")
  # apt drops to the _apt user to download; a directory it cannot write makes it warn only.
  chmod 0755 "$staging"
  if ! (cd "$staging" && apt-get download -qq "$package=$version" >download.log 2>&1) ||
     ! dpkg-deb -x "$staging"/*.deb "$staging/root" ||
     [ ! -x "$staging/root/$path" ]; then
    cat "$staging/download.log" >&2 2>/dev/null || true
    log "could not fetch $package=$version or find $path in it"
    rm -rf "$staging"
    return 1
  fi
  binary=$staging/$name
  mv "$staging/root/$path" "$binary"
  got=$("$binary" --version 2>&1 | head -n1) || { log "$path from $package=$version does not run: $got"; rm -rf "$staging"; return 1; }
  mkdir -p "$staging/keep"
  mv "$binary" "$staging/keep/$name"
  echo "$package=$version" >"$staging/keep/source"
  rm -rf "$out"
  mv "$staging/keep" "$out"
  rm -rf "$staging"
  log "taken from Debian's $package $version ($got)"
  echo "$out/$name"
}

if [ -f "$here/debian" ] && [ "${STO_GO_HELPER_FROM_SOURCE:-0}" != 1 ]; then
  if from_debian; then
    exit 0
  fi
  log "falling back to the Go build"
fi

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
log "built in $(( $(date +%s) - start ))s"
rm -rf "$out"
mv "$staging" "$out"
trap - EXIT
echo "$out/$name"
