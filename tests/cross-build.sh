#!/usr/bin/env bash
# Builds the release binary for amd64 and arm64 with the Dockerfile's flags, without a container
# engine: the same Rust targets, linker and RUSTFLAGS, so the Dockerfile's cross-compilation is
# checked on the build machine. Needs the Rust targets (rustup target add) and, for arm64, the
# Debian cross toolchain (gcc-aarch64-linux-gnu libc6-dev-arm64-cross).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export RUSTFLAGS='-C target-feature=+crt-static --cfg getrandom_backend="linux_raw"'
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc
for target in x86_64-unknown-linux-gnu aarch64-unknown-linux-gnu; do
  start=$(date +%s)
  cargo build --release --locked --target "$target" --target-dir target/cross
  binary=target/cross/$target/release/streaming-token-operator
  echo "[cross] $target in $(( $(date +%s) - start ))s: $(file -b "$binary" | cut -d, -f1-2,4-5)"
  file -b "$binary" | grep -Eq 'statically linked|static-pie linked' || { echo "[cross] $binary is not static" >&2; exit 1; }
done
