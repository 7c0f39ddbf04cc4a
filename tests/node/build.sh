#!/usr/bin/env bash
# Builds (or reuses) what the real test node runs (see tests/node/README.md):
#   bin/kubelet        the official kubelet at the control plane's pinned version, from the
#                      wrapper module tests/node/kubelet (same flags and stamps as
#                      tests/controlplane/build.sh, so the shared packages come from Go's cache)
#   bin/pause          a static sandbox process (pause.c, gcc -static)
#   bin/client         the test client (tests/client, static Go)
#   images/pause.tar   docker-archive images of them, for `ctr images import`:
#   images/client.tar  localhost/sto/pause:1 and localhost/sto/client:1
# Cached outside the clone in ${STO_CACHE_DIR:-~/.cache/streaming-token-operator}/node-<key>/
# where <key> hashes the Go and gcc versions and every file of this recipe (this script,
# pause.c, the kubelet module, the client's sources). Prints that directory; progress on stderr.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
client_src=$(cd "$here/../client" && pwd)
export GOTOOLCHAIN=local
export GOFLAGS=-mod=readonly
export CGO_ENABLED=0

KUBERNETES_VERSION=v1.37.2
# Fixed so that the same inputs give the same binaries (the same date as the control plane's).
BUILD_DATE=2026-01-01T00:00:00Z
PAUSE_IMAGE=localhost/sto/pause:1
CLIENT_IMAGE=localhost/sto/client:1

command -v gcc >/dev/null || { echo "[node] gcc is missing: run tests/node/install.sh" >&2; exit 1; }
cache_root=${STO_CACHE_DIR:-$HOME/.cache/streaming-token-operator}
key=$( {
  go version
  gcc --version | head -n1
  cd "$here" && find . -type f \( -name 'go.mod' -o -name 'go.sum' -o -name 'build.sh' -o -name '*.c' \) | LC_ALL=C sort | xargs sha256sum
  cd "$client_src" && find . -type f \( -name 'go.mod' -o -name 'go.sum' -o -name '*.go' \) | LC_ALL=C sort | xargs sha256sum
} | sha256sum | cut -c1-16)
out="$cache_root/node-$key"

complete() {
  local b
  for b in kubelet pause client; do [ -x "$out/bin/$b" ] || return 1; done
  [ -f "$out/images/pause.tar" ] && [ -f "$out/images/client.tar" ]
}

if complete; then
  echo "$out"
  exit 0
fi

log() { printf '[node] %s\n' "$*" >&2; }
mkdir -p "$cache_root"
staging=$(mktemp -d "$cache_root/.build-node-$key.XXXXXX")
trap 'rm -rf "$staging"' EXIT
mkdir -p "$staging/bin" "$staging/images"
common_flags=(-trimpath -buildvcs=false -pgo=off)
start=$(date +%s)

log "building the pause program and the test client"
gcc -static -O2 -Wall -Werror -o "$staging/bin/pause" "$here/pause.c"
strip "$staging/bin/pause"
(cd "$client_src" && go build "${common_flags[@]}" -ldflags "-s -w" -o "$staging/bin/client" .)

log "building kubelet $KUBERNETES_VERSION (about 1 minute on 2 cores once the control-plane build filled Go's build cache)"
version_ldflags=""
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  version_ldflags+=" -X $pkg.gitVersion=$KUBERNETES_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=37"
  version_ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=$BUILD_DATE"
done
(cd "$here/kubelet" && go build "${common_flags[@]}" -tags selinux,notest,grpcnotrace \
  -ldflags "-s -w $version_ldflags" -o "$staging/bin/kubelet" k8s.io/kubernetes/cmd/kubelet)
log "kubelet built after $(( $(date +%s) - start ))s"

# A docker-archive ("docker save") image of one static binary: manifest.json, the config JSON
# named by its digest, and one layer tar. Fixed times and owners, so the digests are stable.
mkimage() { # output reference binary args...
  local output=$1 ref=$2 binary=$3; shift 3
  local work name layer_sha config config_sha entrypoint
  work=$(mktemp -d "$staging/image.XXXXXX")
  name=$(basename "$binary")
  mkdir -p "$work/rootfs/tmp" "$work/rootfs/etc" "$work/archive"
  chmod 1777 "$work/rootfs/tmp"
  install -m 0755 "$binary" "$work/rootfs/$name"
  printf 'root:x:0:0:root:/:/%s\nnobody:x:65534:65534:nobody:/:/%s\n' "$name" "$name" >"$work/rootfs/etc/passwd"
  printf 'root:x:0:\nnobody:x:65534:\n' >"$work/rootfs/etc/group"
  tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner --format=gnu \
    -C "$work/rootfs" -cf "$work/layer.tar" .
  layer_sha=$(sha256sum "$work/layer.tar" | cut -d' ' -f1)
  mkdir -p "$work/archive/$layer_sha"
  mv "$work/layer.tar" "$work/archive/$layer_sha/layer.tar"
  entrypoint=$(printf '"%s",' "/$name" "$@")
  config=$(printf '{"architecture":"amd64","os":"linux","created":"1970-01-01T00:00:00Z","config":{"Entrypoint":[%s],"Env":["PATH=/"],"WorkingDir":"/"},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]},"history":[{"created":"1970-01-01T00:00:00Z","created_by":"tests/node/build.sh"}]}' \
    "${entrypoint%,}" "$layer_sha")
  config_sha=$(printf '%s' "$config" | sha256sum | cut -d' ' -f1)
  printf '%s' "$config" >"$work/archive/$config_sha.json"
  printf '[{"Config":"%s.json","RepoTags":["%s"],"Layers":["%s/layer.tar"]}]' \
    "$config_sha" "$ref" "$layer_sha" >"$work/archive/manifest.json"
  tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner --format=gnu \
    -C "$work/archive" -cf "$output" .
  rm -rf "$work"
}
mkimage "$staging/images/pause.tar" "$PAUSE_IMAGE" "$staging/bin/pause"
mkimage "$staging/images/client.tar" "$CLIENT_IMAGE" "$staging/bin/client"
printf '%s\n' "$PAUSE_IMAGE" >"$staging/images/pause.ref"
printf '%s\n' "$CLIENT_IMAGE" >"$staging/images/client.ref"

log "node binaries and images built in $(( $(date +%s) - start ))s"
rm -rf "$out"
mv "$staging" "$out"
trap - EXIT
echo "$out"
