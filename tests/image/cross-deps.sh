#!/usr/bin/env bash
# What the arm64 image's cross build needs on an amd64 Debian machine (the Dockerfile installs
# the same): the Rust target aarch64-unknown-linux-gnu (rustup) and Debian's cross gcc and libc
# (ring compiles C; the binary links glibc statically). A no-op when everything is there; apt
# needs root.
set -euo pipefail
log() { printf '[image] %s\n' "$*" >&2; }
target=aarch64-unknown-linux-gnu
if ! rustup target list --installed 2>/dev/null | grep -qx "$target"; then
  log "rustup target add $target"
  rustup target add "$target" >&2 ||
    { log "rustup could not add $target (the arm64 image needs it; STO_IMAGE_PLATFORMS=linux/amd64 builds amd64 only)"; exit 1; }
fi
missing=()
command -v aarch64-linux-gnu-gcc >/dev/null || missing+=(gcc-aarch64-linux-gnu)
[ -d /usr/aarch64-linux-gnu/lib ] && ls /usr/aarch64-linux-gnu/lib/libc.a >/dev/null 2>&1 || missing+=(libc6-dev-arm64-cross)
if [ ${#missing[@]} -gt 0 ]; then
  log "apt-get install ${missing[*]}"
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"; } >&2 ||
    { log "could not install ${missing[*]} (needs root and Debian's packages)"; exit 1; }
fi
