#!/usr/bin/env bash
# Builds (or reuses) the operator's test image: the Dockerfile's image, made without a container
# engine or the internet (see tests/image/README.md):
#   1. crane (go-containerregistry), pinned by go.mod/go.sum here, from the Go module proxy;
#   2. the static operator binary, with the Dockerfile's build-stage flags (recipe.sh);
#   3. one layer (the binary at the Dockerfile's path, and what distroless' static nonroot base
#      gives it: passwd/group with nonroot 65532, /tmp, /home/nonroot, a CA bundle) appended to an
#      empty OCI base, and the final stage's config (user, entrypoint, cmd, env, workdir, port,
#      platform) set by `crane mutate`, through a registry crane serves on 127.0.0.1 for the
#      length of the build; saved as a tarball for `ctr images import`, and as an OCI image
#      layout (oci/, OCI media types) for tests/image/push.sh.
# STO_IMAGE_ARCH=arm64 builds the linux/arm64 image instead of linux/amd64 (the Dockerfile's other
# platform): the same recipe with the Rust target aarch64-unknown-linux-gnu, linked by Debian's
# cross gcc (tests/image/cross-deps.sh installs it and the Rust target when missing).
# Cached outside the clone in ${STO_CACHE_DIR:-~/.cache/streaming-token-operator}:
#   crane-<key>/crane                        key: Go version, go.mod, go.sum, tool, this script
#   operator-static-<key>/streaming-token-operator
#                                            key: rustc, Cargo.lock, Cargo.toml, src/, crds/,
#                                            recipe.sh (arm64: and the target, the cross gcc)
#   operator-image-<key>/{image.tar,image.ref,streaming-token-operator,oci/}
#                                            key: both of the above, this script and the CA
#                                            bundle
# Prints the image's directory (`build.sh crane`: crane's path, nothing else built); progress on
# stderr.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
# shellcheck source=tests/image/recipe.sh
. "$here/recipe.sh"
cache_root=${STO_CACHE_DIR:-$HOME/.cache/streaming-token-operator}
mkdir -p "$cache_root"
log() { printf '[image] %s\n' "$*" >&2; }
CA_BUNDLE=${CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}
[ -f "$CA_BUNDLE" ] || { log "no CA bundle at $CA_BUNDLE (Debian: apt-get install ca-certificates)"; exit 1; }
start=$(date +%s)
arch=${STO_IMAGE_ARCH:-amd64}
case "$arch" in
  amd64)
    target=$TARGET
    platform=$IMAGE_PLATFORM
    ;;
  arm64)
    target=aarch64-unknown-linux-gnu
    platform=linux/arm64
    "$here/cross-deps.sh"
    # The Dockerfile's cross-compilation settings (tests/cross-build.sh's too).
    export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc
    ;;
  *) log "STO_IMAGE_ARCH must be amd64 or arm64, not $arch"; exit 2 ;;
esac

# 1. crane.
crane_key=$( { go version; cd "$here" && sha256sum go.mod go.sum tool build.sh; } | sha256sum | cut -c1-16)
crane_dir="$cache_root/crane-$crane_key"
if [ ! -x "$crane_dir/crane" ]; then
  staging=$(mktemp -d "$cache_root/.build-crane-$crane_key.XXXXXX")
  (cd "$here" && GOTOOLCHAIN=local GOFLAGS=-mod=readonly CGO_ENABLED=0 \
    go build -trimpath -buildvcs=false -ldflags "-s -w" -o "$staging/crane" "$(cat tool)")
  rm -rf "$crane_dir"; mv "$staging" "$crane_dir"
  log "crane $("$crane_dir/crane" version) built in $(( $(date +%s) - start ))s"
fi
crane=$crane_dir/crane
# `build.sh crane`: crane alone (tests/image/push.sh pushes with it).
if [ "${1:-}" = crane ]; then
  echo "$crane"
  exit 0
fi

# 2. The static operator binary, exactly as the Dockerfile's build stage compiles it.
binary_key=$( {
  rustc -vV; cargo -V
  cd "$root" && sha256sum Cargo.lock Cargo.toml
  cd "$root" && find src crds -type f | LC_ALL=C sort | xargs sha256sum
  cd "$here" && sha256sum recipe.sh
  # amd64's key is unchanged from before arm64 existed, so its cached binaries stay valid.
  if [ "$arch" != amd64 ]; then echo "$target"; aarch64-linux-gnu-gcc --version | head -n1; fi
} | sha256sum | cut -c1-16)
binary_dir="$cache_root/operator-static-$binary_key"
if [ ! -x "$binary_dir/streaming-token-operator" ]; then
  t=$(date +%s)
  build_args=("${CARGO_BUILD_ARGS[@]/#$TARGET/$target}")
  log "building the static operator binary (cargo ${build_args[*]}; several minutes cold on 2 cores)"
  # target/cross is tests/cross-build.sh's target directory: the same flags, so they share it.
  (cd "$root" && RUSTFLAGS=$RUSTFLAGS_STATIC cargo "${build_args[@]}" --target-dir target/cross)
  built="$root/target/cross/$target/release/streaming-token-operator"
  file -b "$built" | grep -Eq 'statically linked|static-pie linked' ||
    { log "$built is not static: $(file -b "$built")"; exit 1; }
  staging=$(mktemp -d "$cache_root/.build-operator-static-$binary_key.XXXXXX")
  cp "$built" "$staging/streaming-token-operator"
  rm -rf "$binary_dir"; mv "$staging" "$binary_dir"
  log "static operator binary built in $(( $(date +%s) - t ))s"
fi

# 3. The image.
image_key=$( { echo "$crane_key $binary_key $platform"; sha256sum "$CA_BUNDLE" "$here/build.sh" | cut -d' ' -f1; } | sha256sum | cut -c1-16)
out="$cache_root/operator-image-$image_key"
if [ -f "$out/image.tar" ] && [ -f "$out/image.ref" ] && [ -f "$out/oci/index.json" ]; then
  echo "$out"
  exit 0
fi
t=$(date +%s)
staging=$(mktemp -d "$cache_root/.build-operator-image-$image_key.XXXXXX")
registry_pid=""
cleanup() {
  [ -z "$registry_pid" ] || kill "$registry_pid" 2>/dev/null || true
  rm -rf "$staging"
}
trap cleanup EXIT
rootfs=$staging/rootfs
mkdir -p "$rootfs/etc/ssl/certs" "$rootfs/tmp" "$rootfs/home/nonroot"
install -m 0755 "$binary_dir/streaming-token-operator" "$rootfs$BINARY_PATH"
install -m 0644 "$CA_BUNDLE" "$rootfs/etc/ssl/certs/ca-certificates.crt"
printf 'root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' >"$rootfs/etc/passwd"
printf 'root:x:0:\nnobody:x:65534:\nnonroot:x:65532:\n' >"$rootfs/etc/group"
chmod 0644 "$rootfs/etc/passwd" "$rootfs/etc/group"
chmod 1777 "$rootfs/tmp"
chmod 0700 "$rootfs/home/nonroot"
# Fixed times and owners (the nonroot home belongs to 65532), so the same inputs give the same
# layer digest.
tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner --format=gnu \
  --exclude=./home/nonroot -C "$rootfs" -cf "$staging/layer.tar" .
tar --sort=name --mtime=@0 --owner=65532 --group=65532 --numeric-owner --format=gnu \
  -C "$rootfs" -rf "$staging/layer.tar" ./home/nonroot

# crane mutate edits an image in a registry: one of crane's own, in memory, on 127.0.0.1.
port=$(python3 "$(dirname "${BASH_SOURCE[0]}")/../free-port.py")
"$crane" registry serve --address "127.0.0.1:$port" >"$staging/registry.log" 2>&1 &
registry_pid=$!
for _ in $(seq 1 100); do
  curl -sf "http://127.0.0.1:$port/v2/" >/dev/null 2>&1 && break
  kill -0 "$registry_pid" 2>/dev/null || { cat "$staging/registry.log" >&2; log "crane's registry exited"; exit 1; }
  sleep 0.1
done
scratch="127.0.0.1:$port/sto/operator:layer"
ref="$IMAGE_REPOSITORY:$IMAGE_TAG"
crane_log=$staging/crane.log
"$crane" append --insecure --oci-empty-base -f "$staging/layer.tar" -t "$scratch" >"$crane_log" 2>&1 ||
  { cat "$crane_log" >&2; log "crane append failed"; exit 1; }
mutate=(--insecure --set-platform "$platform" --user "$IMAGE_USER" --workdir "$IMAGE_WORKDIR"
  --exposed-ports "$IMAGE_EXPOSE/tcp")
entrypoint=$(IFS=,; echo "${IMAGE_ENTRYPOINT[*]}")
cmd=$(IFS=,; echo "${IMAGE_CMD[*]}")
mutate+=(--entrypoint "$entrypoint" --cmd "$cmd")
for env in "${IMAGE_ENV[@]}"; do mutate+=(-e "$env"); done
"$crane" mutate "${mutate[@]}" -t "$ref" -o "$staging/image.tar" "$scratch" >"$crane_log" 2>&1 ||
  { cat "$crane_log" >&2; log "crane mutate failed"; exit 1; }
# The same image kept with OCI media types (the tarball's manifest is Docker's), as an OCI
# image layout, for pushing to a registry (tests/image/push.sh).
final="127.0.0.1:$port/sto/operator:final"
{ "$crane" mutate "${mutate[@]}" -t "$final" "$scratch" &&
  "$crane" pull --insecure --format oci "$final" "$staging/oci"; } >"$crane_log" 2>&1 ||
  { cat "$crane_log" >&2; log "crane mutate/pull (OCI layout) failed"; exit 1; }
kill "$registry_pid" 2>/dev/null || true
wait "$registry_pid" 2>/dev/null || true
registry_pid=""
mkdir -p "$staging/out"
mv "$staging/image.tar" "$staging/out/image.tar"
mv "$staging/oci" "$staging/out/oci"
cp "$binary_dir/streaming-token-operator" "$staging/out/streaming-token-operator"
echo "$ref" >"$staging/out/image.ref"
rm -rf "$out"
mv "$staging/out" "$out"
log "image $ref assembled in $(( $(date +%s) - t ))s (total $(( $(date +%s) - start ))s): $out/image.tar"
echo "$out"
