#!/usr/bin/env bash
# helm lint and helm template of the chart with default and non-default values.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
helm="$(tests/controlplane/build.sh)/bin/helm"
chart=charts/streaming-token-operator
for crd in crds/*.yaml; do
  cmp -s "$crd" "$chart/files/crds/$(basename "$crd")" || {
    echo "the chart's copy of $crd differs from crds/: run 'make crds'" >&2; exit 1; }
done
"$helm" lint --strict "$chart"
"$helm" template sto "$chart" --namespace sto-system >/dev/null
"$helm" template sto "$chart" --namespace sto-system \
  --set replicaCount=1 --set leaderElection.enabled=false --set 'watchNamespaces={team-a,team-b}' \
  --set metrics.serviceMonitor.enabled=true --set logFormat=text --set rbac.aggregateToBuiltinRoles=false \
  --api-versions monitoring.coreos.com/v1 >/tmp/sto-helm-template.yaml
grep -q 'kind: RoleBinding' /tmp/sto-helm-template.yaml
grep -q 'namespace: team-b' /tmp/sto-helm-template.yaml
grep -q 'kind: ServiceMonitor' /tmp/sto-helm-template.yaml
! grep -q 'kind: ClusterRoleBinding' /tmp/sto-helm-template.yaml
# Namespace-scoped install: Roles, no ClusterRole at all (the operator reads no Secret elsewhere).
grep -q 'kind: Role$' /tmp/sto-helm-template.yaml
! grep -q 'kind: ClusterRole$' /tmp/sto-helm-template.yaml
"$helm" template sto "$chart" --namespace sto-system > /tmp/sto-helm-default.yaml
grep -q 'kind: PodDisruptionBudget' /tmp/sto-helm-default.yaml
grep -q 'topology.kubernetes.io/zone' /tmp/sto-helm-default.yaml
! grep -q 'kind: PodDisruptionBudget' /tmp/sto-helm-template.yaml  # one replica: no budget
! grep -q 'kind: NetworkPolicy' /tmp/sto-helm-default.yaml  # off by default
! grep -q 'kind: PrometheusRule' /tmp/sto-helm-default.yaml  # off by default
# The CRDs are templates (upgraded by helm upgrade), kept on uninstall; or left to the user.
[ "$(grep -c 'kind: CustomResourceDefinition' /tmp/sto-helm-default.yaml)" = 2 ]
grep -q 'helm.sh/resource-policy: keep' /tmp/sto-helm-default.yaml
"$helm" template sto "$chart" --namespace sto-system --set crds.enabled=false | grep -q 'kind: CustomResourceDefinition' \
  && { echo "crds.enabled=false still renders CRDs" >&2; exit 1; }
"$helm" template sto "$chart" --namespace sto-system --set networkPolicy.enabled=true \
  --set 'networkPolicy.apiServerTo[0].ipBlock.cidr=10.0.0.1/32' > /tmp/sto-helm-netpol.yaml
grep -q 'kind: NetworkPolicy' /tmp/sto-helm-netpol.yaml
grep -q 'cidr: 10.0.0.1/32' /tmp/sto-helm-netpol.yaml
grep -q 'port: 8080' /tmp/sto-helm-netpol.yaml
# The platform's portal API (spec.platform): egress to the ports and peers values say.
"$helm" template sto "$chart" --namespace sto-system --set networkPolicy.enabled=true \
  --set 'networkPolicy.platformTo[0].ipBlock.cidr=203.0.113.7/32' \
  --set 'networkPolicy.platformPorts={18443}' > /tmp/sto-helm-netpol-platform.yaml
grep -q 'cidr: 203.0.113.7/32' /tmp/sto-helm-netpol-platform.yaml
grep -q 'port: 18443' /tmp/sto-helm-netpol-platform.yaml
# values.schema.json refuses wrong values with a message naming the value.
refused() {
  local expect=$1; shift
  if output=$("$helm" template sto "$chart" --namespace sto-system "$@" 2>&1); then
    echo "helm accepted $*" >&2; exit 1
  fi
  grep -q "$expect" <<<"$output" || { echo "helm refused $* without naming $expect: $output" >&2; exit 1; }
}
refused replicaCount --set replicaCount=0
refused logFormat --set logFormat=xml
refused leaseDurationSeconds --set leaderElection.leaseDurationSeconds=2
refused replicas --set replicas=2   # a typo of replicaCount: unknown keys are refused
refused watchNamespaces --set 'watchNamespaces={Not_A_Namespace}'
refused apiServerPorts --set 'networkPolicy.apiServerPorts={0}'
refused tokenMaxAgeDays --set metrics.prometheusRule.tokenMaxAgeDays=0
"$helm" lint --strict "$chart" --set logFormat=xml >/dev/null 2>&1 && { echo "helm lint accepted logFormat=xml" >&2; exit 1; }
echo "helm: lint and template (default and non-default values, schema refusals) passed"
