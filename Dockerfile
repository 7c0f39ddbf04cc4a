# syntax=docker/dockerfile:1
# Multi-stage, multi-architecture build of a static operator binary on a minimal, non-root base:
#   docker buildx build --platform linux/amd64,linux/arm64 -t streaming-token-operator:0.2.0 .
# The build stage runs on the build machine's own platform and cross-compiles for the target
# (TARGETARCH: amd64 or arm64), so an arm64 image needs no emulation.
# The binary is linked statically against glibc (crt-static): it needs no libc at run time,
# reads its ServiceAccount token and CA from the pod, connects to the API server by IP
# (KUBERNETES_SERVICE_HOST, no DNS lookup) and draws randomness from getrandom(2).
# Verified outside a container engine (none on the build machines): both targets built with
# these exact commands and flags (`tests/cross-build.sh`), the amd64 binary run as uid 65532 in an
# empty chroot against the test control plane.

FROM --platform=$BUILDPLATFORM rust:1.95-bookworm AS build
ARG TARGETARCH
WORKDIR /src
# The Rust target and the C cross-toolchain (ring compiles C) for the target architecture.
RUN case "$TARGETARCH" in \
      amd64) echo x86_64-unknown-linux-gnu > /target ;; \
      arm64) echo aarch64-unknown-linux-gnu > /target \
             && apt-get update && apt-get install -y --no-install-recommends gcc-aarch64-linux-gnu libc6-dev-arm64-cross \
             && rm -rf /var/lib/apt/lists/* ;; \
      *) echo "unsupported TARGETARCH $TARGETARCH" >&2; exit 1 ;; \
    esac \
 && rustup target add "$(cat /target)"
ENV CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc \
    CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc
# Static glibc; getrandom(2) called directly (a static binary cannot look the libc symbol up,
# and would otherwise fall back to /dev/urandom).
ENV RUSTFLAGS="-C target-feature=+crt-static --cfg getrandom_backend=\"linux_raw\""
# Dependencies first, so that source changes reuse the cached dependency layer.
COPY Cargo.toml Cargo.lock ./
RUN mkdir src && echo 'fn main() {}' > src/main.rs && touch src/lib.rs \
 && cargo build --release --locked --target "$(cat /target)" \
 && rm -rf src
COPY src ./src
COPY crds ./crds
RUN touch src/main.rs src/lib.rs \
 && cargo build --release --locked --target "$(cat /target)" \
 && cp "target/$(cat /target)/release/streaming-token-operator" /streaming-token-operator

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /streaming-token-operator /streaming-token-operator
USER 65532:65532
# /metrics, /healthz and /readyz.
EXPOSE 8080
ENTRYPOINT ["/streaming-token-operator"]
CMD ["run", "--metrics-bind-address=0.0.0.0:8080"]
