#!/usr/bin/env bash
# The chart's upgrade path, on a control plane of its own (the CRDs are cluster-wide, so this
# cannot share the e2e tests' cluster):
#   1. install the previous chart release (0.1.0: CRDs in the chart's crds/ folder) and show that
#      its CRD prunes a field the current API has (status.namespaceCount);
#   2. adopt its CRDs into the release (the two commands the README gives) and `helm upgrade` to
#      this chart: the CRDs are upgraded (the field is kept now, the ClusterStreamingToken CRD
#      exists) and the Deployment runs the new version;
#   3. `helm uninstall` keeps the CRDs and the StreamingTokens (crds.keep).
# Between 2 and 3, an upgrade with every escape hatch and OpenShift's values shows the API server
# takes what they render.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$PWD
# The last commit whose chart is release 0.1.0 (CRDs in crds/, not upgraded by helm).
previous=16175a2c9fabe930d467d920f713b9b167e3d341
export CLUSTER_DIR=${UPGRADE_CLUSTER_DIR:-$PWD/.cluster/upgrade}
work=$(mktemp -d)
cleanup() { tests/controlplane/cluster.sh down >/dev/null 2>&1 || true; rm -rf "$work"; }
trap cleanup EXIT INT TERM
start=$(date +%s)
bin="$(tests/controlplane/build.sh)/bin"
tests/controlplane/cluster.sh up >/dev/null
export KUBECONFIG=$CLUSTER_DIR/kubeconfig HELM_CACHE_HOME=$work/helm-cache HELM_CONFIG_HOME=$work/helm-config HELM_DATA_HOME=$work/helm-data
kubectl="$bin/kubectl"
helm="$bin/helm"
fail() { echo "[chart-upgrade] FAIL: $*" >&2; exit 1; }

git -C "$root" cat-file -e "$previous^{commit}" 2>/dev/null \
  || fail "commit $previous (chart 0.1.0) is not in this clone's history"
git -C "$root" archive "$previous" charts/streaming-token-operator | tar -x -C "$work"
old_chart="$work/charts/streaming-token-operator"
grep -q '^version: 0.1.0' "$old_chart/Chart.yaml" || fail "the previous chart is not 0.1.0"

# 1. The previous release.
"$helm" install sto "$old_chart" --namespace sto-system --create-namespace --set replicaCount=1 --wait --timeout 90s >/dev/null
"$kubectl" create namespace app >/dev/null
cat <<'YAML' | "$kubectl" apply -f - >/dev/null
apiVersion: streamingtoken.io/v1alpha1
kind: StreamingToken
metadata: {name: telemetry, namespace: app}
spec:
  source: {generate: {}}
YAML
status_count() {
  "$kubectl" patch streamingtoken telemetry -n app --subresource=status --type=merge \
    -p '{"status": {"namespaceCount": 3}}' >/dev/null
  "$kubectl" get streamingtoken telemetry -n app -o jsonpath='{.status.namespaceCount}'
}
[ -z "$(status_count)" ] || fail "the 0.1.0 CRD already keeps status.namespaceCount: this test shows nothing"
echo "[chart-upgrade] 0.1.0 installed; its CRD prunes status.namespaceCount"

# 2. Adopt the CRDs the crds/ folder installed, then upgrade.
for crd in streamingtokens.streamingtoken.io; do
  "$kubectl" label crd "$crd" app.kubernetes.io/managed-by=Helm --overwrite >/dev/null
  "$kubectl" annotate crd "$crd" meta.helm.sh/release-name=sto meta.helm.sh/release-namespace=sto-system --overwrite >/dev/null
done
"$helm" upgrade sto charts/streaming-token-operator --namespace sto-system --set replicaCount=1 --wait --timeout 90s >/dev/null \
  || fail "helm upgrade from 0.1.0"
"$kubectl" wait --for=condition=Established crd/clusterstreamingtokens.streamingtoken.io --timeout=30s >/dev/null \
  || fail "the ClusterStreamingToken CRD was not installed by the upgrade"
[ "$(status_count)" = 3 ] || fail "after the upgrade, status.namespaceCount is still pruned: the CRD was not upgraded"
version=$(sed -n 's/^appVersion: "\(.*\)"/\1/p' charts/streaming-token-operator/Chart.yaml)
image=$("$kubectl" get deployment -n sto-system sto-streaming-token-operator -o jsonpath='{.spec.template.spec.containers[0].image}')
[ "${image##*:}" = "$version" ] || fail "the Deployment runs $image, not $version"
[ "$("$kubectl" get crd streamingtokens.streamingtoken.io -o jsonpath='{.metadata.annotations.helm\.sh/resource-policy}')" = keep ] \
  || fail "the upgraded CRD is not kept on uninstall"
echo "[chart-upgrade] upgraded to $version: CRDs upgraded (new field kept, ClusterStreamingToken CRD added)"

# A second upgrade of the same chart changes nothing and fails on nothing.
"$helm" upgrade sto charts/streaming-token-operator --namespace sto-system --set replicaCount=1 --wait --timeout 90s >/dev/null \
  || fail "helm upgrade to the same version"

# The API server takes what the escape hatches and OpenShift's values render (volumes, probes,
# security contexts, extra objects), and an enabled ServiceMonitor is skipped where the cluster
# serves no monitoring.coreos.com/v1 (the upgrade would fail on an unknown kind otherwise).
"$helm" upgrade sto charts/streaming-token-operator --namespace sto-system --set replicaCount=1 \
  -f tests/helm/escape-hatches-values.yaml -f tests/helm/openshift-values.yaml \
  --set metrics.serviceMonitor.enabled=true --wait --timeout 90s >/dev/null \
  || fail "helm upgrade with the escape hatches, OpenShift's values and a ServiceMonitor without its CRD"
deployment=$("$kubectl" get deployment -n sto-system sto-streaming-token-operator -o json)
grep -q '"image": "registry.example.com:5000/mirror/streamingtoken/streaming-token-operator@sha256:' <<<"$deployment" \
  || fail "the Deployment does not run the mirror's image by digest"
! grep -q '"runAs\(User\|Group\)"' <<<"$deployment" || fail "OpenShift's values left a runAsUser or runAsGroup"
"$kubectl" get configmap -n sto-system corporate-ca-bundle sto-streaming-token-operator-settings >/dev/null \
  || fail "the extraObjects were not installed"
[ "$("$kubectl" get clusterrole sto-streaming-token-operator -o jsonpath='{.metadata.labels.example\.com/team}')" = platform ] \
  || fail "commonLabels are not on the ClusterRole"
echo "[chart-upgrade] escape hatches and OpenShift's values accepted by the API server; ServiceMonitor skipped without its CRD"

# 3. Uninstall keeps the CRDs, and so the StreamingTokens.
"$helm" uninstall sto --namespace sto-system --wait >/dev/null
"$kubectl" get crd streamingtokens.streamingtoken.io clusterstreamingtokens.streamingtoken.io >/dev/null \
  || fail "helm uninstall deleted the CRDs"
"$kubectl" get streamingtoken telemetry -n app >/dev/null || fail "helm uninstall deleted a StreamingToken"
echo "[chart-upgrade] uninstall kept the CRDs and the StreamingTokens; passed in $(( $(date +%s) - start ))s"
