{{/* The chart's name, at most 63 characters. */}}
{{- define "buntime.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The name of the release's objects. */}}
{{- define "buntime.fullname" -}}
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

{{- define "buntime.selectorLabels" -}}
app.kubernetes.io/name: {{ include "buntime.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "buntime.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "buntime.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "buntime.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "buntime.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The Secret holding the master key, and its key. */}}
{{- define "buntime.masterKeySecret" -}}
{{- default (printf "%s-master-key" (include "buntime.fullname" .)) .Values.masterKey.existingSecret }}
{{- end }}
{{- define "buntime.masterKeySecretKey" -}}
{{- if .Values.masterKey.existingSecret }}{{ .Values.masterKey.existingSecretKey }}{{ else }}RUNTIME_MASTER_KEY{{ end }}
{{- end }}

{{/*
Settings the chart refuses. Replicas do not share state yet (apps, databases and
plugin state live on the pod's volumes; a later release brings shared state), so
more than one replica is refused while the data volume is per pod: ReadWriteOnce,
ReadWriteOncePod, or no volume at all.
*/}}
{{- define "buntime.dataPerPod" -}}
{{- $data := .Values.persistence.data }}
{{- if or (not $data.enabled) (has "ReadWriteOnce" $data.accessModes) (has "ReadWriteOncePod" $data.accessModes) }}true{{ end }}
{{- end }}

{{- define "buntime.validate" -}}
{{- $most := int .Values.replicaCount }}
{{- if and .Values.autoscaling.enabled (gt (int .Values.autoscaling.maxReplicas) $most) }}
{{- $most = int .Values.autoscaling.maxReplicas }}
{{- end }}
{{- $data := .Values.persistence.data }}
{{- $perPod := include "buntime.dataPerPod" . }}
{{- if and (gt $most 1) $perPod }}
{{- fail (printf "replicaCount (or autoscaling.maxReplicas) is %d, but the data volume is per pod (persistence.data: %s): Buntime's replicas do not share state yet, so a second replica would serve different data. Keep replicaCount at 1 (and autoscaling.maxReplicas at 1), or give persistence.data a ReadWriteMany claim if you accept that each replica keeps its own in-memory state (see the chart's README, \"Replicas\")." $most (ternary (printf "accessModes %v" $data.accessModes) "enabled: false" $data.enabled)) }}
{{- end }}
{{- if and .Values.autoscaling.enabled (gt (int .Values.autoscaling.minReplicas) (int .Values.autoscaling.maxReplicas)) }}
{{- fail (printf "autoscaling.minReplicas (%d) is above autoscaling.maxReplicas (%d)" (int .Values.autoscaling.minReplicas) (int .Values.autoscaling.maxReplicas)) }}
{{- end }}
{{- end }}

{{/* The volume behind one persistence entry: its claim, or an emptyDir. */}}
{{- define "buntime.volume" -}}
{{- $p := index .root.Values.persistence .name -}}
- name: {{ .name }}
{{- if $p.enabled }}
  persistentVolumeClaim:
    claimName: {{ default (printf "%s-%s" (include "buntime.fullname" .root) .name) $p.existingClaim }}
{{- else }}
  emptyDir: {}
{{- end }}
{{- end }}
