{{/*
Chart name, overridable with nameOverride. Truncated to 63 characters: Kubernetes names and
label values are limited to that.
*/}}
{{- define "dgd-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full name used as the prefix of every object: <release>-<chart>, or just <release> when the
release name already contains the chart name.
*/}}
{{- define "dgd-operator.fullname" -}}
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

{{/*
Chart label value: <chart>-<version>.
*/}}
{{- define "dgd-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels on every object of the release.
*/}}
{{- define "dgd-operator.labels" -}}
helm.sh/chart: {{ include "dgd-operator.chart" . }}
{{ include "dgd-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: dgd
{{- end }}

{{/*
Labels that select the release's pods. Each workload adds app.kubernetes.io/component
(operator, nats, etcd) so their selectors never overlap.
*/}}
{{- define "dgd-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "dgd-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
Name of the ServiceAccount the operator runs as.
*/}}
{{- define "dgd-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "dgd-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
Operator image reference; the tag defaults to the chart's appVersion.
*/}}
{{- define "dgd-operator.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/*
Names and in-cluster addresses of the bundled NATS and etcd. The address forms match what
Dynamo's chart injects (nats://<svc>.<ns>.svc.cluster.local:4222, <svc>.<ns>.svc.cluster.local:2379).
*/}}
{{- define "dgd-operator.natsName" -}}
{{- printf "%s-nats" (include "dgd-operator.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "dgd-operator.etcdName" -}}
{{- printf "%s-etcd" (include "dgd-operator.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "dgd-operator.natsAddress" -}}
{{- if .Values.nats.enabled }}
{{- printf "nats://%s.%s.svc.cluster.local:4222" (include "dgd-operator.natsName" .) .Release.Namespace }}
{{- else }}
{{- .Values.natsAddress }}
{{- end }}
{{- end }}

{{- define "dgd-operator.etcdAddress" -}}
{{- if .Values.etcd.enabled }}
{{- printf "%s.%s.svc.cluster.local:2379" (include "dgd-operator.etcdName" .) .Release.Namespace }}
{{- else }}
{{- .Values.etcdAddress }}
{{- end }}
{{- end }}

{{/*
The validating admission webhook: its Service (also the certificate's DNS name), the Secret
holding its serving certificate, where that Secret is mounted, and the operator's own user
name (the only one, besides a planner, allowed to change adapter-managed replicas).
*/}}
{{- define "dgd-operator.webhookServiceName" -}}
{{- printf "%s-webhook" (include "dgd-operator.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "dgd-operator.webhookSecretName" -}}
{{- printf "%s-webhook-tls" (include "dgd-operator.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "dgd-operator.webhookCertDir" -}}
/etc/dgd/webhook-certs
{{- end }}

{{- define "dgd-operator.operatorUsername" -}}
{{- printf "system:serviceaccount:%s:%s" .Release.Namespace (include "dgd-operator.serviceAccountName" .) }}
{{- end }}

{{/*
Fail early, naming the value, on combinations the schema cannot express.
*/}}
{{- define "dgd-operator.validateValues" -}}
{{- if and (eq .Values.discoveryBackend "etcd") (not .Values.etcd.enabled) (not .Values.etcdAddress) }}
{{- fail "discoveryBackend is \"etcd\" but neither etcd.enabled nor etcdAddress is set" }}
{{- end }}
{{- if and .Values.metrics.serviceMonitor.enabled (not .Values.metrics.service) }}
{{- fail "metrics.serviceMonitor.enabled needs metrics.service: true (the ServiceMonitor selects that Service)" }}
{{- end }}
{{- if and (gt (int .Values.replicaCount) 1) (not .Values.leaderElection.enabled) }}
{{- fail "replicaCount above 1 needs leaderElection.enabled: true (two replicas would both reconcile)" }}
{{- end }}
{{- if and .Values.leaderElection.enabled (not (lt (float64 .Values.leaderElection.renewDeadline) (float64 .Values.leaderElection.leaseDuration))) }}
{{- fail "leaderElection.renewDeadline must be below leaderElection.leaseDuration" }}
{{- end }}
{{- if and .Values.leaderElection.enabled (not (lt (float64 .Values.leaderElection.retryPeriod) (float64 .Values.leaderElection.renewDeadline))) }}
{{- fail "leaderElection.retryPeriod must be below leaderElection.renewDeadline" }}
{{- end }}
{{- if eq (int .Values.metrics.port) (int .Values.health.port) }}
{{- fail "metrics.port and health.port must differ" }}
{{- end }}
{{- if and .Values.webhook.enabled (or (eq (int .Values.webhook.port) (int .Values.metrics.port)) (eq (int .Values.webhook.port) (int .Values.health.port))) }}
{{- fail "webhook.port must differ from metrics.port and health.port" }}
{{- end }}
{{- end }}

{{- /* DGD_TOPOLOGY_DOMAIN_KEYS: the topologyDomainKeys map as sorted domain=key pairs. */ -}}
{{- define "dgd-operator.topologyDomainKeys" -}}
{{- $pairs := list }}
{{- range $domain, $key := .Values.topologyDomainKeys }}
{{- $pairs = append $pairs (printf "%s=%s" $domain $key) }}
{{- end }}
{{- join "," $pairs }}
{{- end }}
