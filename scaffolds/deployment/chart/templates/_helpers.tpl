{{/*
The application's name: the chart's name (the application), unless overridden.
Each environment has its own namespace, so the name needs no environment suffix.
*/}}
{{- define "app.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "app.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Selector labels: never change them, a Deployment's selector is immutable.
*/}}
{{- define "app.selectorLabels" -}}
app.kubernetes.io/name: {{ include "app.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
Every object carries the standard labels and the portal's, which tie it to its team, project,
application and environment (the keys the portal puts on the namespace too).
*/}}
{{- define "app.labels" -}}
helm.sh/chart: {{ include "app.chart" . }}
{{ include "app.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | toString | trunc 63 | trimSuffix "-" | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: {{ .Values.portal.project | quote }}
portal.dev/team: {{ required "portal.team is required" .Values.portal.team | quote }}
portal.dev/project: {{ required "portal.project is required" .Values.portal.project | quote }}
portal.dev/application: {{ required "portal.application is required" .Values.portal.application | quote }}
portal.dev/environment: {{ required "portal.environment is required: use a values-<environment>.yaml" .Values.portal.environment | quote }}
{{- end }}

{{- define "app.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "app.name" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
The image: by digest when one is recorded, by tag otherwise.
*/}}
{{- define "app.image" -}}
{{- $repository := required "image.repository is required" .Values.image.repository }}
{{- if .Values.image.digest }}
{{- printf "%s@%s" $repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" $repository (required "image.tag is required" .Values.image.tag | toString) }}
{{- end }}
{{- end }}
