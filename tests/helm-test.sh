#!/usr/bin/env bash
# helm lint and helm template of the chart with default and non-default values, as a subchart of
# an umbrella chart, with OpenShift's values and with every escape hatch. Fields are checked with
# jq on the manifests as JSON (tests/helm/manifests.py), where grep could match the wrong object.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
helm="$(tests/controlplane/build.sh)/bin/helm"
chart=charts/streaming-token-operator
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail() { echo "helm-test: FAIL: $*" >&2; exit 1; }
# render NAME ARGS...: helm template of the chart into $work/NAME.yaml and, as JSON, NAME.json.
render() {
  local name=$1; shift
  "$helm" template sto "$chart" --namespace sto-system "$@" >"$work/$name.yaml" || fail "helm template $*"
  tests/helm/manifests.py <"$work/$name.yaml" >"$work/$name.json" || fail "$name: the manifests are not YAML"
}
# check NAME JQ [WHY]: the jq expression is true of the manifests NAME rendered.
check() {
  jq -e "$2" "$work/$1.json" >/dev/null || fail "$1: ${3:-$2}"
}
deployment='(.[] | select(.kind == "Deployment"))'
pod="$deployment.spec.template.spec"
container="$pod.containers[0]"
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
# Webhook receivers of rotation notifications, when set apart from the platform.
"$helm" template sto "$chart" --namespace sto-system --set networkPolicy.enabled=true \
  --set 'networkPolicy.webhookTo[0].ipBlock.cidr=198.51.100.9/32' \
  --set 'networkPolicy.webhookPorts={8443}' > /tmp/sto-helm-netpol-webhook.yaml
grep -q 'cidr: 198.51.100.9/32' /tmp/sto-helm-netpol-webhook.yaml
grep -q 'port: 8443' /tmp/sto-helm-netpol-webhook.yaml
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
refused webhookPorts --set 'networkPolicy.webhookPorts={0}'
refused notificationFailedWindow --set metrics.prometheusRule.notificationFailedWindow=soon
refused tokenMaxAgeDays --set metrics.prometheusRule.tokenMaxAgeDays=0
# The PrometheusRule, like the ServiceMonitor, only where the cluster serves its CRD (or forced).
# (Rendered into a variable first: `helm | grep -q` fails under pipefail when grep stops reading.)
rule=$("$helm" template sto "$chart" --namespace sto-system --set metrics.prometheusRule.enabled=true)
! grep -q 'kind: PrometheusRule' <<<"$rule" || { echo "PrometheusRule rendered without its CRD" >&2; exit 1; }
rule=$("$helm" template sto "$chart" --namespace sto-system --set metrics.prometheusRule.enabled=true \
  --api-versions monitoring.coreos.com/v1)
grep -q 'kind: PrometheusRule' <<<"$rule"
rule=$("$helm" template sto "$chart" --namespace sto-system --set metrics.prometheusRule.enabled=true \
  --set metrics.prometheusRule.force=true)
grep -q 'kind: PrometheusRule' <<<"$rule"
"$helm" lint --strict "$chart" --set logFormat=xml >/dev/null 2>&1 && { echo "helm lint accepted logFormat=xml" >&2; exit 1; }
# Typos inside the new values are refused too, and wrong shapes name the value.
refused runAsUsr --set podSecurityContext.runAsUsr=1000
refused privilegd --set securityContext.privilegd=false
refused runAsUser --set podSecurityContext.runAsUser=root
refused periodSecond --set livenessProbe.periodSecond=5
refused digest --set image.digest=latest
refused imageRegistry --set imageRegistry=https://registry.example.com
refused imageRegistry --set global.imageRegistry=https://registry.example.com
refused extraArgs --set 'extraArgs[0]='
refused mountPath --set 'volumeMounts[0].name=ca'
refused revisionHistoryLimit --set revisionHistoryLimit=-1
refused create --set rbac.create=no
refused enabled --set enabled=yes
refused scrapeTimeout --set metrics.serviceMonitor.scrapeTimeout=10
refused namespace --set metrics.serviceMonitor.namespace=Monitoring
refused forse --set metrics.serviceMonitor.forse=true
refused commonLabels --set 'commonLabels.a.b=c'

# The default render: the hardened defaults, as before the values that can change them.
render default
check default "$pod.securityContext == {runAsNonRoot: true, runAsUser: 65532, runAsGroup: 65532, seccompProfile: {type: \"RuntimeDefault\"}}" \
  "the pod's security context is not the hardened default"
check default "$container.securityContext == {allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, runAsNonRoot: true, capabilities: {drop: [\"ALL\"]}}" \
  "the container's security context is not the hardened default"
check default "$container.livenessProbe == {httpGet: {path: \"/healthz\", port: \"metrics\"}, periodSeconds: 20, failureThreshold: 3}"
check default "$container.readinessProbe == {httpGet: {path: \"/readyz\", port: \"metrics\"}, periodSeconds: 5, failureThreshold: 2}"
check default "$container.image == \"ghcr.io/streamingtoken/streaming-token-operator:$(sed -n 's/^appVersion: "\(.*\)"/\1/p' "$chart/Chart.yaml")\""
check default "$deployment.spec.revisionHistoryLimit == 10"
check default "$container.args == [\"run\", \"--metrics-bind-address=0.0.0.0:8080\", \"--leader-elect\", \"--lease-name=streaming-token-operator\", \"--lease-duration-seconds=15\", \"--log-format=json\"]"
check default "($pod | has(\"volumes\") | not) and ($container | has(\"volumeMounts\") | not)"
check default "[.[] | select(.kind | test(\"Role\"))] | length == 11" \
  "the default RBAC is not a ClusterRole and its binding, the Lease's Role and binding, the Lease readers' Role and binding, and 5 user roles"
check default "[.[] | select(.kind == \"RoleBinding\" and (.metadata.name | endswith(\"-leader-lease-reader\")))][0].subjects == [{apiGroup: \"rbac.authorization.k8s.io\", kind: \"Group\", name: \"system:authenticated\"}]" \
  "the Lease is not readable by every authenticated user (kubectl streamingtoken version)"
check default "[.[] | select(.kind == \"Role\" and (.metadata.name | endswith(\"-leader-lease-reader\")))][0].rules == [{apiGroups: [\"coordination.k8s.io\"], resources: [\"leases\"], resourceNames: [\"streaming-token-operator\"], verbs: [\"get\"]}]" \
  "the Lease readers may do more than get the one Lease"

# OpenShift: no fixed UID or GID anywhere (the SCC assigns them), the rest of the hardening kept.
render openshift -f tests/helm/openshift-values.yaml
! grep -q 'runAs\(User\|Group\)' "$work/openshift.yaml" || fail "openshift: runAsUser or runAsGroup rendered"
check openshift "$pod.securityContext == {runAsNonRoot: true, seccompProfile: {type: \"RuntimeDefault\"}}"
check openshift "$container.securityContext.readOnlyRootFilesystem and ($container.securityContext.capabilities.drop == [\"ALL\"])"
# "" removes a key as null does.
render openshift-empty --set podSecurityContext.runAsUser= --set podSecurityContext.runAsGroup=
! grep -q 'runAs\(User\|Group\)' "$work/openshift-empty.yaml" || fail "openshift-empty: runAsUser or runAsGroup rendered"
check openshift-empty "$pod.securityContext.seccompProfile.type == \"RuntimeDefault\""

# Every escape hatch at once (tests/helm/escape-hatches-values.yaml).
"$helm" lint --strict "$chart" -f tests/helm/escape-hatches-values.yaml -f tests/helm/openshift-values.yaml >/dev/null \
  || fail "helm lint with the escape hatches and OpenShift's values"
render escape -f tests/helm/escape-hatches-values.yaml
check escape "$container.image == \"registry.example.com:5000/mirror/streamingtoken/streaming-token-operator@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\"" \
  "imageRegistry and image.digest: not registry/repository@digest"
check escape "$container.args[-1] == \"--cluster-token-selector=example.com/shard=a\"" "extraArgs not after the chart's own"
check escape "[$container.env[].name] == [\"RUST_LOG\", \"POD_NAME\", \"POD_NAMESPACE\", \"HTTPS_PROXY\", \"NO_PROXY\", \"SSL_CERT_FILE\"]" "extraEnv"
check escape "$pod.volumes == [{name: \"corporate-ca\", configMap: {name: \"corporate-ca-bundle\"}}]" "volumes"
check escape "$container.volumeMounts == [{name: \"corporate-ca\", mountPath: \"/etc/ssl/corporate\", readOnly: true}]" "volumeMounts"
check escape "$container.livenessProbe == {httpGet: {path: \"/healthz\", port: \"metrics\"}, periodSeconds: 20, failureThreshold: 3, initialDelaySeconds: 5}" \
  "livenessProbe: a key added to the defaults"
check escape "$container.readinessProbe == {tcpSocket: {port: \"metrics\"}, periodSeconds: 10, failureThreshold: 2}" \
  "readinessProbe: httpGet: null removes the default's"
check escape "$deployment.spec.revisionHistoryLimit == 3" "revisionHistoryLimit"
check escape "[.[] | select(.metadata.labels[\"helm.sh/chart\"] != null)] | length > 10 and all(.metadata.labels[\"example.com/team\"] == \"platform\")" \
  "commonLabels: an object of the chart's without them"
check escape "all(.[]; .metadata.labels[\"app.kubernetes.io/name\"] != \"not-the-chart\")" "commonLabels overrode the chart's own label"
check escape "$pod.metadata == null and ($deployment.spec.template.metadata.labels == {\"app.kubernetes.io/name\": \"streaming-token-operator\", \"app.kubernetes.io/instance\": \"sto\", \"example.com/team\": \"platform\"})" \
  "the pod template's labels: the selector's and commonLabels"
check escape ".[] | select(.kind == \"ConfigMap\" and .metadata.name == \"sto-streaming-token-operator-settings\") | .metadata.namespace == \"sto-system\" and .data.release == \"sto\"" \
  "extraObjects: an object rendered with tpl"
check escape ".[] | select(.kind == \"ConfigMap\" and .metadata.name == \"corporate-ca-bundle\") | .metadata.labels[\"app.kubernetes.io/instance\"] == \"sto\"" \
  "extraObjects: a string rendered with tpl"

# The registry: imageRegistry before global.imageRegistry; it replaces a repository's registry
# (a host: with a dot, a port, or localhost) or goes in front of a repository that names none.
image() { render image "$@"; jq -r "$container.image" "$work/image.json"; }
[ "$(image --set global.imageRegistry=mirror.example.com)" = mirror.example.com/streamingtoken/streaming-token-operator:0.2.0 ] \
  || fail "global.imageRegistry: $(image --set global.imageRegistry=mirror.example.com)"
[ "$(image --set global.imageRegistry=global.example.com --set imageRegistry=mine.example.com)" = mine.example.com/streamingtoken/streaming-token-operator:0.2.0 ] \
  || fail "imageRegistry does not win over global.imageRegistry"
[ "$(image --set imageRegistry=mirror.example.com --set image.repository=streamingtoken/operator --set image.tag=1.2.3)" = mirror.example.com/streamingtoken/operator:1.2.3 ] \
  || fail "imageRegistry before a repository without a registry"
[ "$(image --set imageRegistry=mirror.example.com --set image.repository=localhost/operator)" = mirror.example.com/operator:0.2.0 ] \
  || fail "imageRegistry in place of localhost"
[ "$(image --set image.repository=localhost:5000/operator --set image.tag=dev)" = localhost:5000/operator:dev ] \
  || fail "image.repository with a port, no mirror"

# rbac.create=false: no Role, ClusterRole or binding at all (the user brings them), even with
# the options that add some.
render no-rbac --set rbac.create=false --set 'watchNamespaces={team-a}'
check no-rbac "[.[] | select(.kind | test(\"Role\"))] == []" "rbac.create=false still renders RBAC"
check no-rbac "[.[] | select(.kind == \"Deployment\" or .kind == \"ServiceAccount\")] | length == 2"
render no-rbac-cluster --set rbac.create=false
check no-rbac-cluster "[.[] | select(.kind | test(\"Role\"))] == []" "rbac.create=false still renders RBAC"

# The ServiceMonitor: skipped where monitoring.coreos.com/v1 is not served (no Prometheus
# Operator), rendered where it is, or with force.
enable_monitor=(--set metrics.serviceMonitor.enabled=true)
render monitor-absent "${enable_monitor[@]}"
check monitor-absent "[.[] | select(.kind == \"ServiceMonitor\")] == []" "a ServiceMonitor without its CRD"
render monitor-forced "${enable_monitor[@]}" --set metrics.serviceMonitor.force=true
check monitor-forced "[.[] | select(.kind == \"ServiceMonitor\")] | length == 1" "metrics.serviceMonitor.force"
render monitor-kind "${enable_monitor[@]}" --api-versions monitoring.coreos.com/v1/ServiceMonitor
check monitor-kind "[.[] | select(.kind == \"ServiceMonitor\")] | length == 1" "the ServiceMonitor with its kind served"
render monitor "${enable_monitor[@]}" --api-versions monitoring.coreos.com/v1 \
  --set metrics.serviceMonitor.namespace=monitoring --set metrics.serviceMonitor.interval=15s \
  --set metrics.serviceMonitor.scrapeTimeout=10s --set metrics.serviceMonitor.labels.release=kube-prometheus \
  --set 'metrics.serviceMonitor.relabelings[0].targetLabel=cluster' --set 'metrics.serviceMonitor.relabelings[0].replacement=east' \
  --set 'metrics.serviceMonitor.metricRelabelings[0].action=drop' --set 'metrics.serviceMonitor.metricRelabelings[0].regex=go_.*' \
  --set 'metrics.serviceMonitor.metricRelabelings[0].sourceLabels={__name__}' --set commonLabels.team=platform
monitor='(.[] | select(.kind == "ServiceMonitor"))'
check monitor "$monitor.metadata.namespace == \"monitoring\" and $monitor.spec.namespaceSelector.matchNames == [\"sto-system\"]" \
  "metrics.serviceMonitor.namespace: not there, or not selecting the release's namespace"
check monitor "$monitor.metadata.labels.release == \"kube-prometheus\" and $monitor.metadata.labels.team == \"platform\"" "metrics.serviceMonitor.labels"
check monitor "$monitor.spec.endpoints == [{port: \"metrics\", interval: \"15s\", scrapeTimeout: \"10s\", relabelings: [{targetLabel: \"cluster\", replacement: \"east\"}], metricRelabelings: [{action: \"drop\", regex: \"go_.*\", sourceLabels: [\"__name__\"]}]}]" \
  "the ServiceMonitor's endpoint"
check monitor "$monitor.spec.selector.matchLabels == {\"app.kubernetes.io/name\": \"streaming-token-operator\", \"app.kubernetes.io/instance\": \"sto\"}"
render monitor-here --set metrics.serviceMonitor.enabled=true --api-versions monitoring.coreos.com/v1
check monitor-here "(.[] | select(.kind == \"ServiceMonitor\")) | .metadata.namespace == \"sto-system\" and (.spec | has(\"namespaceSelector\") | not) and (.spec.endpoints[0] | keys == [\"interval\", \"port\"])" \
  "the ServiceMonitor's defaults"

# As a subchart of an umbrella chart (tests/helm/umbrella), which passes `global` (with keys of
# other subcharts) and `enabled`: lint and template.
cp -r tests/helm/umbrella "$work/umbrella"
rm -rf "$work/umbrella/charts" && mkdir "$work/umbrella/charts" && cp -r "$chart" "$work/umbrella/charts/"
"$helm" lint --strict --with-subcharts "$work/umbrella" >/dev/null || "$helm" lint --strict --with-subcharts "$work/umbrella" >&2 || fail "helm lint of the umbrella chart"
umbrella() {
  local name=$1; shift
  "$helm" template platform "$work/umbrella" --namespace platform "$@" >"$work/$name.yaml" || fail "helm template of the umbrella chart $*"
  tests/helm/manifests.py <"$work/$name.yaml" >"$work/$name.json"
}
umbrella umbrella
check umbrella "$container.image == \"mirror.example.com/streamingtoken/streaming-token-operator:0.2.0\"" "global.imageRegistry from the umbrella"
check umbrella "$deployment.spec.replicas == 1 and $deployment.metadata.name == \"platform-streaming-token-operator\""
check umbrella "[.[] | select(.metadata.labels[\"helm.sh/chart\"] != null) | .metadata.labels[\"example.com/platform\"]] | length > 10 and all(. == \"true\")" \
  "the umbrella's commonLabels for the subchart"
check umbrella ".[] | select(.kind == \"ConfigMap\" and .metadata.name == \"platform-platform\") | .data.storageClass == \"fast\""
# The subchart's values from the umbrella: null removes a default there too (OpenShift).
{ echo "streaming-token-operator:"; sed 's/^/  /' tests/helm/openshift-values.yaml; } >"$work/umbrella-openshift-values.yaml"
umbrella umbrella-openshift -f "$work/umbrella-openshift-values.yaml"
! grep -q 'runAs\(User\|Group\)' "$work/umbrella-openshift.yaml" || fail "umbrella-openshift: runAsUser or runAsGroup rendered"
check umbrella-openshift "$pod.securityContext == {runAsNonRoot: true, seccompProfile: {type: \"RuntimeDefault\"}}"
umbrella umbrella-disabled --set streaming-token-operator.enabled=false
check umbrella-disabled "[.[].kind] == [\"ConfigMap\"]" "streaming-token-operator.enabled=false still installs the operator"
# The subchart's schema still refuses a typo.
if output=$("$helm" template platform "$work/umbrella" --set streaming-token-operator.replicas=2 2>&1); then
  fail "the umbrella chart accepted streaming-token-operator.replicas"
fi
grep -q replicas <<<"$output" || fail "the umbrella chart refused a typo without naming it: $output"

echo "helm: lint and template (default and non-default values, subchart, OpenShift, escape hatches, RBAC, ServiceMonitor, schema refusals) passed"
