#!/usr/bin/env bash
# Pushes the operator's image to an OCI registry as a multi-platform image: one image per
# platform (tests/image/build.sh, STO_IMAGE_ARCH per platform; OCI media types), tagged
# TAG-ARCH, and an OCI image index over them tagged TAG. Plain HTTP is for registries on
# 127.0.0.1 only (tests/registry/registry.sh).
#   tests/image/push.sh REGISTRY [TAG]
#     REGISTRY   host:port, e.g. 127.0.0.1:5000
#     TAG        default: the chart's appVersion
#   STO_IMAGE_REPOSITORY   the repository in the registry (default sto/streaming-token-operator)
#   STO_IMAGE_PLATFORMS    the platforms (default "linux/amd64 linux/arm64")
# Prints REGISTRY/REPOSITORY@sha256:... of the index on stdout; each platform's digest, and the
# index's, on stderr.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
registry=${1:?usage: tests/image/push.sh REGISTRY [TAG]}
tag=${2:-$(sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' "$root/charts/streaming-token-operator/Chart.yaml")}
repository=${STO_IMAGE_REPOSITORY:-sto/streaming-token-operator}
read -r -a platforms <<<"${STO_IMAGE_PLATFORMS:-linux/amd64 linux/arm64}"
log() { printf '[image-push] %s\n' "$*" >&2; }
insecure=()
case "$registry" in 127.0.0.1:*|localhost:*) insecure=(--insecure) ;; esac

crane=$("$here/build.sh" crane)
crane_log=$(mktemp)
trap 'rm -f "$crane_log"' EXIT
run_crane() {
  "$crane" "$@" 2>"$crane_log" || { cat "$crane_log" >&2; log "crane $1 failed"; exit 1; }
}

manifests=()
for platform in "${platforms[@]}"; do
  case "$platform" in
    linux/amd64|linux/arm64) arch=${platform#linux/} ;;
    *) log "no image for $platform (linux/amd64 and linux/arm64 are built)"; exit 2 ;;
  esac
  dir=$(STO_IMAGE_ARCH=$arch "$here/build.sh")
  pushed=$(run_crane push "${insecure[@]}" "$dir/oci" "$registry/$repository:$tag-$arch")
  log "$platform: $pushed"
  manifests+=(-m "$pushed")
done
run_crane index append "${insecure[@]}" "${manifests[@]}" -t "$registry/$repository:$tag" >/dev/null
digest=$(run_crane digest "${insecure[@]}" "$registry/$repository:$tag")
log "index $registry/$repository:$tag: $digest"
echo "$registry/$repository@$digest"
