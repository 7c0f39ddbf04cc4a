#!/usr/bin/env bash
# Regenerates kubernetes/go.mod and go.sum for a Kubernetes version (default: the pinned one):
# k8s.io/kubernetes replaces its staging modules with ./staging/...; consumers ignore replace
# lines, so each staging module is replaced here with its published v0.<minor>.<patch>.
#   tests/controlplane/gen-kubernetes-mod.sh v1.37.2
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
version=${1:-v1.37.2}
staging=v0.${version#v1.}
export GOTOOLCHAIN=local GOFLAGS=-mod=mod
mod=$(go mod download -json "k8s.io/kubernetes@$version" | sed -n 's/^\s*"GoMod": "\(.*\)",$/\1/p')
go_line=$(grep -m1 '^go ' "$mod")
cd "$here/kubernetes"
{
  echo "// Wrapper module that builds the official Kubernetes control-plane binaries at a pinned"
  echo "// version. k8s.io/kubernetes replaces its staging modules with ./staging/...; consumers"
  echo "// ignore those replace lines, so every staging module is replaced here with its published"
  echo "// version instead. Regenerate with tests/controlplane/gen-kubernetes-mod.sh."
  echo "module streamingtoken.io/controlplane/kubernetes"
  echo
  echo "$go_line"
  echo "replace ("
  grep -E '^\s*k8s.io/[a-z0-9-]+ => \./staging' "$mod" | awk -v v="$staging" '{print "\t"$1" => "$1" "v}'
  echo ")"
} > go.mod
rm -f go.sum
go mod edit -require="k8s.io/kubernetes@$version"
for tool in kube-apiserver kube-controller-manager kube-scheduler kubectl; do
  go mod edit -tool="k8s.io/kubernetes/cmd/$tool"
done
go mod tidy
echo "kubernetes/go.mod pinned to $version ($(grep -c '=> k8s.io' go.mod) staging modules)"
