#!/usr/bin/env bash
# helm lint and helm template of the chart with default and non-default values.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
helm="$(tests/controlplane/build.sh)/bin/helm"
chart=charts/streaming-token-operator
cmp -s crds/streamingtokens.streamingtoken.io.yaml "$chart/crds/streamingtokens.streamingtoken.io.yaml" || {
  echo "the chart's CRD differs from crds/: run 'make crds'" >&2; exit 1; }
"$helm" lint --strict "$chart"
"$helm" template sto "$chart" --namespace sto-system >/dev/null
"$helm" template sto "$chart" --namespace sto-system \
  --set replicaCount=1 --set leaderElection.enabled=false --set 'watchNamespaces={team-a,team-b}' \
  --set metrics.serviceMonitor.enabled=true --set logFormat=text --set rbac.aggregateToBuiltinRoles=false \
  >/tmp/sto-helm-template.yaml
grep -q 'kind: RoleBinding' /tmp/sto-helm-template.yaml
grep -q 'namespace: team-b' /tmp/sto-helm-template.yaml
grep -q 'kind: ServiceMonitor' /tmp/sto-helm-template.yaml
! grep -q 'kind: ClusterRoleBinding' /tmp/sto-helm-template.yaml
echo "helm: lint and template (default and non-default values) passed"
