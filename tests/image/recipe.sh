# The operator image's recipe, shared by build.sh (which builds the test image) and check.sh
# (which checks that the Dockerfile, the cross build and the built image agree with it). Sourced,
# not run.
# shellcheck shell=bash disable=SC2034

# The Rust target of the amd64 image and the flags of the Dockerfile's build stage: static glibc,
# getrandom(2) called directly.
TARGET=x86_64-unknown-linux-gnu
RUSTFLAGS_STATIC='-C target-feature=+crt-static --cfg getrandom_backend="linux_raw"'
CARGO_BUILD_ARGS=(build --release --locked --target "$TARGET")
# The final stage: distroless static-debian12:nonroot with the binary at the root.
IMAGE_BASE=gcr.io/distroless/static-debian12:nonroot
BINARY_PATH=/streaming-token-operator
IMAGE_USER=65532:65532
IMAGE_ENTRYPOINT=(/streaming-token-operator)
IMAGE_CMD=(run --metrics-bind-address=0.0.0.0:8080)
IMAGE_EXPOSE=8080
# What distroless' static nonroot base gives a static binary and this image reproduces: its PATH
# and CA bundle variable, its working directory (home of the nonroot user), /etc/passwd and
# /etc/group naming root, nonroot (65532) and nobody, /tmp (1777), a CA bundle (Debian's).
IMAGE_ENV=(PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt)
IMAGE_WORKDIR=/home/nonroot
IMAGE_PLATFORM=linux/amd64
# The reference the image is tagged with (imported into the real node's containerd; pods use
# imagePullPolicy: Never).
IMAGE_REPOSITORY=localhost/sto/streaming-token-operator
IMAGE_TAG=test
