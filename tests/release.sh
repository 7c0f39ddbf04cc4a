#!/usr/bin/env bash
# What a release runs: the chart packaged and pushed as an OCI artifact, the operator's image
# pushed as an OCI image index (linux/amd64 and linux/arm64), and every digest printed.
#   tests/release.sh REGISTRY [OUT]
#     REGISTRY  host:port of an OCI registry: the chart goes to oci://REGISTRY/charts, the image
#               to REGISTRY/sto/streaming-token-operator. A registry on 127.0.0.1 is spoken to
#               in plain HTTP (`make release` starts one: tests/registry/registry.sh); another
#               one needs `helm registry login` and crane's (docker's) credentials beforehand.
#     OUT       a directory for the packaged chart and a summary, release.env (default: a temp
#               directory, removed)
#   STO_IMAGE_PLATFORMS, STO_IMAGE_REPOSITORY: as for tests/image/push.sh.
# release.env (and stdout) name: CHART_REF, CHART_VERSION, CHART_DIGEST, IMAGE_REPOSITORY,
# IMAGE_TAG, IMAGE_DIGEST (the index), IMAGE_DIGEST_<ARCH> (each platform's image).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
registry=${1:?usage: tests/release.sh REGISTRY [OUT]}
log() { printf '[release] %s\n' "$*" >&2; }
if [ -n "${2:-}" ]; then
  out=$2
  mkdir -p "$out"
else
  out=$(mktemp -d)
  trap 'rm -rf "$out"' EXIT
fi
start=$(date +%s)
helm="$("$root/tests/controlplane/build.sh")/bin/helm"
plain_http=()
case "$registry" in 127.0.0.1:*|localhost:*) plain_http=(--plain-http) ;; esac
# helm's registry client keeps its credentials and cache under these; a release of its own.
export HELM_CACHE_HOME=$out/helm/cache HELM_CONFIG_HOME=$out/helm/config HELM_DATA_HOME=$out/helm/data
chart=$root/charts/streaming-token-operator
version=$(sed -n 's/^version: *//p' "$chart/Chart.yaml")
app_version=$(sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' "$chart/Chart.yaml")

# 1. The chart: helm package, then helm push to oci://REGISTRY/charts.
log "helm package $chart"
"$helm" package "$chart" --destination "$out" >&2
package=$out/streaming-token-operator-$version.tgz
log "helm push $(basename "$package") oci://$registry/charts ${plain_http[*]}"
pushed=$("$helm" push "$package" "oci://$registry/charts" "${plain_http[@]}" 2>&1) ||
  { echo "$pushed" >&2; log "helm push failed"; exit 1; }
echo "$pushed" >&2
chart_digest=$(sed -n 's/^Digest: *//p' <<<"$pushed")
[ -n "$chart_digest" ] || { log "helm push printed no digest"; exit 1; }

# 2. The image: one image per platform and the index over them (tests/image/push.sh).
log "tests/image/push.sh $registry $app_version (${STO_IMAGE_PLATFORMS:-linux/amd64 linux/arm64})"
image_log=$out/image-push.log
index=$("$root/tests/image/push.sh" "$registry" "$app_version" 2>"$image_log") ||
  { cat "$image_log" >&2; log "the image push failed"; exit 1; }
cat "$image_log" >&2
image_repository=${index%@*}

{
  echo "CHART_REF=oci://$registry/charts/streaming-token-operator"
  echo "CHART_VERSION=$version"
  echo "CHART_DIGEST=$chart_digest"
  echo "IMAGE_REPOSITORY=$image_repository"
  echo "IMAGE_TAG=$app_version"
  echo "IMAGE_DIGEST=${index#*@}"
  sed -n 's/^\[image-push\] linux\/\([a-z0-9]*\): .*@\(sha256:[0-9a-f]*\)$/IMAGE_DIGEST_\U\1\E=\2/p' "$image_log"
} >"$out/release.env"
log "published in $(( $(date +%s) - start ))s:"
cat "$out/release.env"
