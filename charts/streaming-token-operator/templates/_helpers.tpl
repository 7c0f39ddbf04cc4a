{{/* Chart name. */}}
{{- define "sto.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: release-chart unless the release name already contains the chart name. */}}
{{- define "sto.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* Common labels: the chart's own, then commonLabels (the chart's win on a clash). */}}
{{- define "sto.labels" -}}
{{- include "sto.labelsWith" (dict "context" . "extra" dict) }}
{{- end }}

{{/*
The chart's own labels, then `extra` (a kind's own labels from values, or fixed ones such as the
aggregation labels), then commonLabels: the first wins on a clash, so no value can change the
labels the selectors and `helm` rely on. Called with (dict "context" $ "extra" $labels).
*/}}
{{- define "sto.labelsWith" -}}
{{- $context := .context }}
{{- $own := dict
  "helm.sh/chart" (printf "%s-%s" $context.Chart.Name $context.Chart.Version | replace "+" "_")
  "app.kubernetes.io/version" ($context.Chart.AppVersion | toString)
  "app.kubernetes.io/managed-by" $context.Release.Service }}
{{- $own = merge $own (include "sto.selectorLabels" $context | fromYaml) }}
{{- toYaml (merge $own (.extra | default dict) ($context.Values.commonLabels | default dict)) }}
{{- end }}

{{/* Selector labels. */}}
{{- define "sto.selectorLabels" -}}
app.kubernetes.io/name: {{ include "sto.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* ServiceAccount name. */}}
{{- define "sto.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "sto.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The metrics listener's address; a loopback one only in the node's network namespace. */}}
{{- define "sto.metricsBindAddress" -}}
{{- $address := .Values.metrics.bindAddress | default "0.0.0.0" }}
{{- if and (hasPrefix "127." $address) (not .Values.hostNetwork) }}
{{- fail "metrics.bindAddress: a loopback address needs hostNetwork: true (the kubelet's probes could not reach it)" }}
{{- end }}
{{- $address }}
{{- end }}

{{/*
The operator's image: repository:tag, or repository@digest when image.digest is set. A registry
(imageRegistry, else global.imageRegistry) replaces the registry part of image.repository (its
first component when that names a host: it has a dot or a port, or is localhost) or, when the
repository names none, is put in front of it.
*/}}
{{- define "sto.image" -}}
{{- $repository := .Values.image.repository }}
{{- $registry := .Values.imageRegistry | default (.Values.global | default dict).imageRegistry }}
{{- if $registry }}
{{- $parts := splitList "/" $repository }}
{{- $first := first $parts }}
{{- if and (gt (len $parts) 1) (or (contains "." $first) (contains ":" $first) (eq $first "localhost")) }}
{{- $repository = rest $parts | join "/" }}
{{- end }}
{{- $repository = printf "%s/%s" (trimSuffix "/" $registry) $repository }}
{{- end }}
{{- if .Values.image.digest }}
{{- printf "%s@%s" $repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" $repository (.Values.image.tag | default .Chart.AppVersion | toString) }}
{{- end }}
{{- end }}

{{/*
A security context from values without its empty keys: Helm removes a key set to null, and this
removes one set to "" too (for example runAsUser on OpenShift, which assigns the UID itself).
*/}}
{{- define "sto.securityContext" -}}
{{- $context := dict }}
{{- range $key, $value := . }}
{{- if not (or (kindIs "invalid" $value) (and (kindIs "string" $value) (eq $value ""))) }}
{{- $_ := set $context $key $value }}
{{- end }}
{{- end }}
{{- with $context }}
{{- toYaml . }}
{{- end }}
{{- end }}

{{/*
Whether the cluster serves the Prometheus Operator's API for `kind` (monitoring.coreos.com/v1),
or the values force the object: rendered as "true", or empty.
*/}}
{{- define "sto.monitoringApi" -}}
{{- $capabilities := .context.Capabilities.APIVersions }}
{{- if or .force ($capabilities.Has (printf "monitoring.coreos.com/v1/%s" .kind)) ($capabilities.Has "monitoring.coreos.com/v1") }}true{{ end }}
{{- end }}
