{{/*
Names. The release's full name is "<release>-developer-portal", or the release name when it already
holds the chart's name. A component's objects are "<fullname>-<component>" (web, worker, watcher,
migrations), within the 63 characters of a label value.
*/}}
{{- define "developer-portal.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "developer-portal.fullname" -}}
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

{{/* "<fullname>-<component>"; call with (list $ "web"). */}}
{{- define "developer-portal.componentName" -}}
{{- $root := index . 0 }}
{{- printf "%s-%s" (include "developer-portal.fullname" $root | trunc 52 | trimSuffix "-") (index . 1) }}
{{- end }}

{{- define "developer-portal.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels. Selector labels never change (a Deployment's selector is immutable); every object carries the
standard labels, and a component's objects its app.kubernetes.io/component.
*/}}
{{- define "developer-portal.selectorLabels" -}}
app.kubernetes.io/name: {{ include "developer-portal.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "developer-portal.labels" -}}
helm.sh/chart: {{ include "developer-portal.chart" . }}
{{ include "developer-portal.selectorLabels" . }}
app.kubernetes.io/version: {{ include "developer-portal.version" . | quote }}
app.kubernetes.io/part-of: developer-portal
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* call with (list $ "web") */}}
{{- define "developer-portal.componentSelectorLabels" -}}
{{ include "developer-portal.selectorLabels" (index . 0) }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end }}

{{/* call with (list $ "web") */}}
{{- define "developer-portal.componentLabels" -}}
{{ include "developer-portal.labels" (index . 0) }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end }}

{{/* The image: by digest when one is given, else by tag (default: the chart's appVersion). */}}
{{- define "developer-portal.version" -}}
{{- default .Chart.AppVersion .Values.image.tag | toString | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "developer-portal.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag | toString) }}
{{- end }}
{{- end }}

{{- define "developer-portal.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "developer-portal.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The Ingress's URL, when there is one. */}}
{{- define "developer-portal.ingressURL" -}}
{{- if .Values.ingress.enabled }}
{{- printf "%s://%s" (ternary "https" "http" .Values.ingress.tls.enabled) .Values.ingress.host }}
{{- end }}
{{- end }}

{{/*
The ConfigMap's data: `config`, each value as the string the portal parses (a whole number that YAML
read as a float is written without an exponent: 1e+06 would not parse as an int), and PORTAL_PUBLIC_URL
from the Ingress unless given. values.schema.json admits in `config` only the portal's settings that are
not secrets, each of its type (tests/test_helm_chart.py keeps it equal to portal/config.py).
*/}}
{{- define "developer-portal.configData" -}}
{{- $config := deepCopy .Values.config }}
{{- if and .Values.ingress.enabled (not (hasKey $config "PORTAL_PUBLIC_URL")) }}
{{- $_ := set $config "PORTAL_PUBLIC_URL" (include "developer-portal.ingressURL" .) }}
{{- end }}
{{- range $name, $value := $config }}
{{- if and (kindIs "float64" $value) (eq $value (floor $value)) }}
{{ $name }}: {{ printf "%.0f" $value | quote }}
{{- else }}
{{ $name }}: {{ $value | toString | quote }}
{{- end }}
{{- end }}
{{- end }}

{{/* The chart's Secret's data (base64), the settings given a value. */}}
{{- define "developer-portal.secretData" -}}
{{- range $name, $value := .Values.secret }}
{{- if $value }}
{{ $name }}: {{ $value | toString | b64enc | quote }}
{{- end }}
{{- end }}
{{- end }}

{{/* The Secret the pods read: existingSecret, or the chart's. */}}
{{- define "developer-portal.secretName" -}}
{{- default (include "developer-portal.fullname" .) .Values.existingSecret }}
{{- end }}

{{/* Refusals the schema cannot express, with what to do instead. */}}
{{- define "developer-portal.validate" -}}
{{- if .Values.existingSecret }}
{{- range $name, $value := .Values.secret }}
{{- if $value }}
{{- fail (printf "secret.%s is set but existingSecret is too: put every secret setting in the Secret %s, or unset existingSecret" $name $.Values.existingSecret) }}
{{- end }}
{{- end }}
{{- end }}
{{- $autoscaling := .Values.web.autoscaling }}
{{- if and $autoscaling.enabled (lt (int $autoscaling.maxReplicas) (int $autoscaling.minReplicas)) }}
{{- fail (printf "web.autoscaling.maxReplicas (%v) is below web.autoscaling.minReplicas (%v)" $autoscaling.maxReplicas $autoscaling.minReplicas) }}
{{- end }}
{{- if and $autoscaling.enabled (not $autoscaling.targetCPUUtilizationPercentage) (not $autoscaling.targetMemoryUtilizationPercentage) }}
{{- fail "web.autoscaling needs targetCPUUtilizationPercentage or targetMemoryUtilizationPercentage" }}
{{- end }}
{{- if and .Values.metrics.serviceMonitor.useMetricsToken (not .Values.existingSecret) (not .Values.secret.PORTAL_METRICS_TOKEN) }}
{{- fail "metrics.serviceMonitor.useMetricsToken needs secret.PORTAL_METRICS_TOKEN (or existingSecret holding it)" }}
{{- end }}
{{- end }}

{{/*
Checksum of the configuration, on the pods' template: a changed ConfigMap or chart Secret rolls the
pods. (A changed existingSecret does not: restart them, `kubectl rollout restart`.)
*/}}
{{- define "developer-portal.configChecksum" -}}
{{- printf "%s\n%s" (include "developer-portal.configData" .) (include "developer-portal.secretData" .) | sha256sum }}
{{- end }}

{{/*
What every portal container shares: the image, the settings, the security context, /tmp and the extra
mounts. Call with (dict "root" $ "configMap" name "secret" name).
*/}}
{{- define "developer-portal.containerCommon" -}}
{{- $root := .root -}}
image: {{ include "developer-portal.image" $root | quote }}
imagePullPolicy: {{ $root.Values.image.pullPolicy }}
envFrom:
  - configMapRef:
      name: {{ .configMap }}
  - secretRef:
      name: {{ .secret }}
  {{- with $root.Values.extraEnvFrom }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
securityContext:
  {{- toYaml $root.Values.securityContext | nindent 2 }}
{{- end }}

{{- define "developer-portal.volumeMounts" -}}
- name: tmp
  mountPath: /tmp
{{- with .Values.extraVolumeMounts }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "developer-portal.volumes" -}}
- name: tmp
  emptyDir:
    sizeLimit: {{ .Values.tmpSizeLimit }}
{{- with .Values.extraVolumes }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
What every pod of the chart shares. Call with (dict "root" $ "component" .Values.web): the component's
scheduling wins over the chart-wide defaults.
*/}}
{{- define "developer-portal.podCommon" -}}
{{- $root := .root }}
{{- $component := .component }}
{{- with $root.Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  {{- toYaml $root.Values.podSecurityContext | nindent 2 }}
{{- with $root.Values.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- with (default $root.Values.nodeSelector $component.nodeSelector) }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with (default $root.Values.tolerations $component.tolerations) }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with (default $root.Values.affinity $component.affinity) }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $component.topologySpreadConstraints }}
topologySpreadConstraints:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}
