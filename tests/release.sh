#!/usr/bin/env bash
# What a release runs: the chart packaged and pushed as an OCI artifact, the operator's image
# pushed as an OCI image index (linux/amd64 and linux/arm64), the kubectl plugin (an archive per
# platform and its krew manifest), and every digest printed.
#   tests/release.sh REGISTRY [OUT]
#     REGISTRY  host:port of an OCI registry: the chart goes to oci://REGISTRY/charts, the image
#               to REGISTRY/sto/streaming-token-operator. A registry on 127.0.0.1 is spoken to
#               in plain HTTP (`make release` starts one: tests/registry/registry.sh); another
#               one needs `helm registry login` and crane's (docker's) credentials beforehand.
#     OUT       a directory for the packaged chart and a summary, release.env (default: a temp
#               directory, removed)
#   STO_IMAGE_PLATFORMS, STO_IMAGE_REPOSITORY: as for tests/image/push.sh (the plugin archives
#               are made for the same platforms).
#   STO_PLUGIN_URL  where the release uploads the plugin archives (each at STO_PLUGIN_URL/NAME,
#               for example a GitHub release's download URL); the krew manifest's `uri`s. Default:
#               file://OUT, the local files (a dry run: `kubectl krew install --manifest
#               OUT/streamingtoken.yaml --archive OUT/ARCHIVE` installs from them).
#   STO_PLUGIN_HOMEPAGE  the manifest's `homepage` (none when unset).
# OUT also holds kubectl-streamingtoken_linux_<arch>.tar.gz (the static binary as
# kubectl-streamingtoken, and LICENSE; reproducible: fixed times and owners, gzip -n) and
# streamingtoken.yaml, the krew manifest (krew.googlecontainertools.github.com/v1alpha2 Plugin:
# a platform per archive, with its selector, uri, sha256 and bin).
# release.env (and stdout) name: CHART_REF, CHART_VERSION, CHART_DIGEST, IMAGE_REPOSITORY,
# IMAGE_TAG, IMAGE_DIGEST (the index), IMAGE_DIGEST_<ARCH> (each platform's image),
# PLUGIN_MANIFEST, PLUGIN_ARCHIVE_<ARCH> and PLUGIN_SHA256_<ARCH>.
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

# 3. The kubectl plugin: the static binary of each published platform (tests/image/build.sh,
#    cached by the image push) as kubectl-streamingtoken, with the LICENSE, in one archive per
#    platform; the krew manifest over them.
plugin_version=$(sed -n 's/^version = "\(.*\)"$/\1/p' "$root/Cargo.toml" | head -n1)
[ "$plugin_version" = "$app_version" ] ||
  { log "Cargo.toml's version ($plugin_version) is not the chart's appVersion ($app_version)"; exit 1; }
plugin_url=${STO_PLUGIN_URL:-file://$out}
plugin_env=$out/plugin.env
: >"$plugin_env"
platform_entries=""
read -r -a plugin_platforms <<<"${STO_IMAGE_PLATFORMS:-linux/amd64 linux/arm64}"
for platform in "${plugin_platforms[@]}"; do
  arch=${platform#linux/}
  binary="$(STO_IMAGE_ARCH=$arch "$root/tests/image/build.sh")/streaming-token-operator"
  archive=kubectl-streamingtoken_linux_$arch.tar.gz
  stage=$(mktemp -d)
  install -m 0755 "$binary" "$stage/kubectl-streamingtoken"
  install -m 0644 "$root/LICENSE" "$stage/LICENSE"
  tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner --format=gnu \
    -C "$stage" -cf - kubectl-streamingtoken LICENSE | gzip -n >"$out/$archive"
  rm -rf "$stage"
  sha=$(sha256sum "$out/$archive" | cut -d' ' -f1)
  log "plugin $platform: $archive sha256:$sha"
  upper=$(tr '[:lower:]' '[:upper:]' <<<"$arch")
  { echo "PLUGIN_ARCHIVE_$upper=$out/$archive"; echo "PLUGIN_SHA256_$upper=$sha"; } >>"$plugin_env"
  platform_entries+="  - selector:
      matchLabels:
        os: linux
        arch: $arch
    uri: $plugin_url/$archive
    sha256: \"$sha\"
    bin: kubectl-streamingtoken
    files:
      - from: kubectl-streamingtoken
        to: .
      - from: LICENSE
        to: .
"
done
{
  cat <<YAML
apiVersion: krew.googlecontainertools.github.com/v1alpha2
kind: Plugin
metadata:
  name: streamingtoken
spec:
  version: v$plugin_version
YAML
  [ -z "${STO_PLUGIN_HOMEPAGE:-}" ] || echo "  homepage: $STO_PLUGIN_HOMEPAGE"
  cat <<YAML
  shortDescription: Rotate streaming token pairs without downtime
  description: |
    The command line of streaming-token-operator, which keeps a streaming platform's pair of
    tokens in a Secret and deactivates Token 1 only once no pod can still hold it.
    \`kubectl streamingtoken rotate NAME --wait\` (or -l SELECTOR, --all, -A) asks for rotations
    and follows them; \`status NAME\` shows where every consumer stands; \`check\` verifies the
    CRDs, the running operator and your rights to rotate; \`version\` shows the operator's.
  caveats: |
    The operator itself runs in the cluster (its Helm chart). Run
    \`kubectl streamingtoken check\` to see that it is installed and that you may rotate.
  platforms:
YAML
  printf '%s' "$platform_entries"
} >"$out/streamingtoken.yaml"
log "krew manifest: $out/streamingtoken.yaml (uris under $plugin_url)"

{
  echo "CHART_REF=oci://$registry/charts/streaming-token-operator"
  echo "CHART_VERSION=$version"
  echo "CHART_DIGEST=$chart_digest"
  echo "IMAGE_REPOSITORY=$image_repository"
  echo "IMAGE_TAG=$app_version"
  echo "IMAGE_DIGEST=${index#*@}"
  sed -n 's/^\[image-push\] linux\/\([a-z0-9]*\): .*@\(sha256:[0-9a-f]*\)$/IMAGE_DIGEST_\U\1\E=\2/p' "$image_log"
  echo "PLUGIN_MANIFEST=$out/streamingtoken.yaml"
  cat "$plugin_env"
} >"$out/release.env"
rm -f "$plugin_env"
log "published in $(( $(date +%s) - start ))s:"
cat "$out/release.env"
