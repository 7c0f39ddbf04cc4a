#!/usr/bin/env bash
# Checks that the published recipe (the Dockerfile), the cross build (tests/cross-build.sh), the
# chart and the test image (tests/image/build.sh) agree, on what recipe.sh states once: the Rust
# target and RUSTFLAGS of the build stage, its cargo command, the binary's path, the user, the
# entrypoint and command, the exposed port, and the base it reproduces. With an image directory
# (build.sh's output) it also reads the built image's config and layer: the same user,
# entrypoint, command, port, platform, and the static binary at the Dockerfile's path.
#   tests/image/check.sh [IMAGE_DIR]
# DOCKERFILE overrides the Dockerfile checked (to see this check fail on a changed copy).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
# shellcheck source=tests/image/recipe.sh
. "$here/recipe.sh"
dockerfile=${DOCKERFILE:-$root/Dockerfile}
failures=0
check() { # what expected actual
  if [ "$2" != "$3" ]; then
    printf '[image-check] MISMATCH %s:\n  recipe:   %s\n  found:    %s\n' "$1" "$2" "$3" >&2
    failures=$((failures + 1))
  fi
}
json_array() { printf '%s\n' "$@" | jq -R . | jq -cs .; }

# The Dockerfile's build stage.
flags=$(sed -n 's/^ENV RUSTFLAGS="\(.*\)"[[:space:]]*\\\?$/\1/p' "$dockerfile" | sed 's/\\"/"/g')
check "Dockerfile build stage RUSTFLAGS" "$RUSTFLAGS_STATIC" "$flags"
cross_flags=$(sed -n "s/^export RUSTFLAGS='\(.*\)'$/\1/p" "$root/tests/cross-build.sh")
check "tests/cross-build.sh RUSTFLAGS" "$RUSTFLAGS_STATIC" "$cross_flags"
amd64_target=$(sed -n 's/.*amd64) echo \([a-z0-9_-]*\) > \/target.*/\1/p' "$dockerfile")
check "Dockerfile amd64 Rust target" "$TARGET" "$amd64_target"
# The build of the binary that is copied out (the RUN ending with cp ... /streaming-token-operator).
build=$(grep -E '^\s*(RUN|&&)? *cargo build ' "$dockerfile" | tail -n1 | sed -E 's/^\s*(RUN|&&)? *cargo //; s/ *\\$//; s/ *&&.*//')
check "Dockerfile cargo command" "${CARGO_BUILD_ARGS[*]}" "${build//\"\$(cat \/target)\"/$TARGET}"
# shellcheck disable=SC2016 # the Dockerfile's literal $(cat /target)
copied=$(sed -n 's/.*cp "target\/$(cat \/target)\/release\/streaming-token-operator" \(\/[^ ]*\).*/\1/p' "$dockerfile")
check "Dockerfile binary path (build stage)" "$BINARY_PATH" "$copied"
final_copy=$(sed -n 's/^COPY --from=build [^ ]* \(.*\)$/\1/p' "$dockerfile")
check "Dockerfile binary path (final stage)" "$BINARY_PATH" "$final_copy"

# The final stage.
check "Dockerfile base" "$IMAGE_BASE" "$(awk '/^FROM/ {base=$2} END {print base}' "$dockerfile")"
check "Dockerfile USER" "$IMAGE_USER" "$(sed -n 's/^USER //p' "$dockerfile")"
check "Dockerfile ENTRYPOINT" "$(json_array "${IMAGE_ENTRYPOINT[@]}")" "$(sed -n 's/^ENTRYPOINT //p' "$dockerfile" | jq -c .)"
check "Dockerfile CMD" "$(json_array "${IMAGE_CMD[@]}")" "$(sed -n 's/^CMD //p' "$dockerfile" | jq -c .)"
check "Dockerfile EXPOSE" "$IMAGE_EXPOSE" "$(sed -n 's/^EXPOSE //p' "$dockerfile")"

# The chart runs the image as its user.
# Read from the Deployment as the chart renders it with its default values (the user is a value,
# podSecurityContext, since OpenShift must be able to drop it).
helm="$("$root/tests/controlplane/build.sh")/bin/helm"
deployment=$("$helm" template sto "$root/charts/streaming-token-operator" --show-only templates/deployment.yaml)
chart_user="$(sed -n 's/^ *runAsUser: //p' <<<"$deployment" | head -n1):$(sed -n 's/^ *runAsGroup: //p' <<<"$deployment" | head -n1)"
check "chart runAsUser:runAsGroup" "$IMAGE_USER" "$chart_user"

# The built image.
if [ -n "${1:-}" ]; then
  dir=$1
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  tar -xf "$dir/image.tar" -C "$work"
  config_file=$(jq -r '.[0].Config' "$work/manifest.json")
  config=$work/$config_file
  check "image reference" "$IMAGE_REPOSITORY:$IMAGE_TAG" "$(jq -r '.[0].RepoTags[0]' "$work/manifest.json")"
  check "image User" "$IMAGE_USER" "$(jq -r '.config.User' "$config")"
  check "image Entrypoint" "$(json_array "${IMAGE_ENTRYPOINT[@]}")" "$(jq -c '.config.Entrypoint' "$config")"
  check "image Cmd" "$(json_array "${IMAGE_CMD[@]}")" "$(jq -c '.config.Cmd' "$config")"
  check "image ExposedPorts" "$IMAGE_EXPOSE/tcp" "$(jq -r '.config.ExposedPorts | keys | join(",")' "$config")"
  check "image WorkingDir" "$IMAGE_WORKDIR" "$(jq -r '.config.WorkingDir' "$config")"
  check "image Env" "$(json_array "${IMAGE_ENV[@]}")" "$(jq -c '.config.Env' "$config")"
  check "image platform" "$IMAGE_PLATFORM" "$(jq -r '.os + "/" + .architecture' "$config")"
  layers=$(jq -r '.[0].Layers | length' "$work/manifest.json")
  check "image layers" 1 "$layers"
  layer=$work/$(jq -r '.[0].Layers[0]' "$work/manifest.json")
  mkdir "$work/rootfs"
  # crane may store the layer compressed; tar detects it.
  tar -xf "$layer" -C "$work/rootfs"
  binary=$work/rootfs$BINARY_PATH
  check "image binary present and executable" yes "$([ -x "$binary" ] && echo yes || echo no)"
  check "image binary is the static build" "$(sha256sum <"$dir/streaming-token-operator")" "$(sha256sum <"$binary")"
  check "image binary static" yes "$(file -b "$binary" | grep -Eq 'statically linked|static-pie linked' && echo yes || echo no)"
  check "image binary mode and owner" "-rwxr-xr-x 0/0" "$(tar -tvf "$layer" ".$BINARY_PATH" | awk '{print $1, $2}')"
  check "image nonroot user" "nonroot:x:65532:65532" "$(grep '^nonroot:' "$work/rootfs/etc/passwd" | cut -d: -f1-4)"
fi

if [ "$failures" -gt 0 ]; then
  echo "[image-check] $failures mismatch(es) between the Dockerfile, tests/cross-build.sh, the chart and the test image (tests/image/recipe.sh)" >&2
  exit 1
fi
echo "[image-check] the Dockerfile, tests/cross-build.sh, the chart${1:+ and the test image} agree: $TARGET, RUSTFLAGS '$RUSTFLAGS_STATIC', user $IMAGE_USER, entrypoint ${IMAGE_ENTRYPOINT[*]} ${IMAGE_CMD[*]}" >&2
