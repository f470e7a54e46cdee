{{/* Chart name, overridable. */}}
{{- define "callstorage.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full name: release-prefixed, so that two releases in one cluster never collide on the
cluster-scoped ClusterRole and ClusterRoleBinding.
*/}}
{{- define "callstorage.fullname" -}}
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

{{- define "callstorage.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "callstorage.selectorLabels" -}}
app.kubernetes.io/name: {{ include "callstorage.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "callstorage.labels" -}}
helm.sh/chart: {{ include "callstorage.chart" . }}
{{ include "callstorage.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: callstorage
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "callstorage.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "callstorage.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
Namespaces served in namespaced mode: watchNamespaces plus the release namespace (the
platform storage lives there), without duplicates. Empty list = cluster-wide mode.
*/}}
{{- define "callstorage.watchNamespaces" -}}
{{- if .Values.watchNamespaces }}
{{- append .Values.watchNamespaces .Release.Namespace | uniq | join "," }}
{{- end }}
{{- end }}

{{/* Namespaces the built-in CallTypes go to. */}}
{{- define "callstorage.callTypeNamespaces" -}}
{{- if .Values.builtinCallTypes.namespaces }}
{{- .Values.builtinCallTypes.namespaces | uniq | join "," }}
{{- else }}
{{- .Release.Namespace }}
{{- end }}
{{- end }}
