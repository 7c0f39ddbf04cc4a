#!/usr/bin/env bash
# Builds (or reuses) the pinned control-plane binaries used by the end-to-end tests:
# kube-apiserver, kube-controller-manager, kube-scheduler, kubectl (k8s.io/kubernetes),
# etcd, the KWOK controller and helm, plus the KWOK stage files.
#
# Everything comes from the Go module proxy through the wrapper modules beside this script
# (their go.mod/go.sum pin every dependency). The result is cached outside the clone, in
#   ${STO_CACHE_DIR:-~/.cache/streaming-token-operator}/controlplane-<key>/
# where <key> hashes the Go version and every file of this recipe, so a warm run costs
# a few milliseconds and any change of inputs builds afresh.
#
# Prints the cache directory (holding bin/ and stages/) on stdout; progress goes to stderr.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
export GOTOOLCHAIN=local
export GOFLAGS=-mod=readonly
export CGO_ENABLED=0

KUBERNETES_VERSION=v1.37.2
# Fixed so that the same inputs give the same binaries.
BUILD_DATE=2026-01-01T00:00:00Z

cache_root=${STO_CACHE_DIR:-$HOME/.cache/streaming-token-operator}
# The key covers what the binaries are built from (this script and the pinned modules), not
# the scripts that only run them (cluster.sh) or regenerate a module (gen-kubernetes-mod.sh).
key=$( { go version; cd "$here" && find . -type f \( -name 'go.mod' -o -name 'go.sum' -o -name 'build.sh' \) | LC_ALL=C sort | xargs sha256sum; } | sha256sum | cut -c1-16)
out="$cache_root/controlplane-$key"
binaries=(kube-apiserver kube-controller-manager kube-scheduler kubectl etcd kwok helm)

complete() {
  for b in "${binaries[@]}"; do [ -x "$out/bin/$b" ] || return 1; done
  [ -f "$out/stages/pod-delete.yaml" ]
}

if complete; then
  echo "$out"
  exit 0
fi

log() { printf '[controlplane] %s\n' "$*" >&2; }
mkdir -p "$cache_root"
staging=$(mktemp -d "$cache_root/.build-$key.XXXXXX")
trap 'rm -rf "$staging"' EXIT
mkdir -p "$staging/bin" "$staging/stages"

common_flags=(-trimpath -buildvcs=false -pgo=off)
start=$(date +%s)

log "building Kubernetes $KUBERNETES_VERSION (apiserver, controller-manager, scheduler, kubectl); a cold build takes about 8 minutes on 2 cores"
version_ldflags=""
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  version_ldflags+=" -X $pkg.gitVersion=$KUBERNETES_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=37"
  version_ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=$BUILD_DATE"
done
(cd "$here/kubernetes" && go build "${common_flags[@]}" -tags selinux,notest,grpcnotrace \
  -ldflags "-s -w $version_ldflags" -o "$staging/bin/" \
  k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
  k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubectl)
log "Kubernetes built after $(( $(date +%s) - start ))s"

log "building etcd"
(cd "$here/etcd" && go build "${common_flags[@]}" -ldflags "-s -w" -o "$staging/bin/etcd" go.etcd.io/etcd/server/v3)

log "building kwok"
kwok_version=$(cd "$here/kwok" && go list -m -f '{{.Version}}' sigs.k8s.io/kwok)
(cd "$here/kwok" && go build "${common_flags[@]}" \
  -ldflags "-s -w -X sigs.k8s.io/kwok/pkg/consts.Version=$kwok_version" \
  -o "$staging/bin/kwok" sigs.k8s.io/kwok/cmd/kwok)

log "building helm"
helm_version=$(cd "$here/helm" && go list -m -f '{{.Version}}' helm.sh/helm/v3)
(cd "$here/helm" && go build "${common_flags[@]}" \
  -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$helm_version" \
  -o "$staging/bin/helm" helm.sh/helm/v3/cmd/helm)

# KWOK v0.8+ has no built-in stages. Nodes become Ready at once and keep a lease heartbeat;
# pods become Ready at once ("fast" set). Deletion uses the "general" set's pod-delete, which,
# like a kubelet, only removes a terminating pod once it has no finalizers and its grace period
# allows, so tests can hold a pod in Terminating (the "fast" pod-delete strips finalizers).
kwok_dir=$(cd "$here/kwok" && go list -m -f '{{.Dir}}' sigs.k8s.io/kwok)
cp "$kwok_dir/kustomize/stage/node/fast/node-initialize.yaml" \
   "$kwok_dir/kustomize/stage/node/heartbeat-with-lease/node-heartbeat-with-lease.yaml" \
   "$kwok_dir/kustomize/stage/pod/fast/pod-ready.yaml" \
   "$kwok_dir/kustomize/stage/pod/fast/pod-complete.yaml" \
   "$kwok_dir/kustomize/stage/pod/general/pod-delete.yaml" "$staging/stages/"
chmod -R u+w "$staging/stages"

log "all binaries built in $(( $(date +%s) - start ))s"
rm -rf "$out"
mv "$staging" "$out"
trap - EXIT
echo "$out"
