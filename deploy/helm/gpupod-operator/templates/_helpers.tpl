{{/* Chart name, truncated to the 63 characters of a label value. */}}
{{- define "gpupod-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: the prefix of every object name. */}}
{{- define "gpupod-operator.fullname" -}}
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

{{/* Labels that select the operator pod (never change them: the selector is immutable). */}}
{{- define "gpupod-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "gpupod-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Labels of every object. */}}
{{- define "gpupod-operator.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "gpupod-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: gpupod-operator
{{- end }}

{{- define "gpupod-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "gpupod-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The Secret holding the API key: the chart's own when apiKey.value is set. */}}
{{- define "gpupod-operator.apiKeySecretName" -}}
{{- if .Values.apiKey.value }}
{{- printf "%s-api-key" (include "gpupod-operator.fullname" .) }}
{{- else }}
{{- required "set apiKey.existingSecret (an existing Secret with the Yotta API key) or apiKey.value" .Values.apiKey.existingSecret }}
{{- end }}
{{- end }}

{{- define "gpupod-operator.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag }}
{{- if .Values.image.digest }}
{{- printf "%s:%s@%s" .Values.image.repository $tag .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository $tag }}
{{- end }}
{{- end }}

{{/*
RBAC rules the operator needs in every namespace it watches: a ClusterRole's rules with -A,
a Role's in each of watchNamespaces. Each rule is proven both ways by tests/e2e/test_helm.py.
*/}}
{{- define "gpupod-operator.namespacedRules" -}}
# kopf lists and watches GpuPods, and merge/JSON-patches them for the finalizer
# gpupod.dev/finalizer and its gpupod.dev/* annotations. Never creates, updates or deletes them.
- apiGroups: ["gpupod.dev"]
  resources: ["gpupods"]
  verbs: ["list", "watch", "patch"]
# A GpuPod read fresh by name: a waiting GpuPod reconciled as soon as quota frees, and the
# check that a GpuQuota reservation's GpuPod is really gone before the reservation is dropped.
- apiGroups: ["gpupod.dev"]
  resources: ["gpupods"]
  verbs: ["get"]
# GpuQuota admission: kopf lists and watches the quotas (an in-memory index), and the
# operator writes their status (the reservations) with a resourceVersion precondition, reading
# one fresh by name after a lost swap. Never their spec.
- apiGroups: ["gpupod.dev"]
  resources: ["gpuquotas"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["gpupod.dev"]
  resources: ["gpuquotas/status"]
  verbs: ["patch"]
# Status (podId, phase, conditions, ...) is written through the status subresource only.
- apiGroups: ["gpupod.dev"]
  resources: ["gpupods/status"]
  verbs: ["patch"]
# env valueFrom.secretKeyRef and the API key of a YottaAccount: one Secret read by name when
# it is used (a rotated key works from the next call). No list/watch, so the operator cannot
# enumerate Secrets or cache their contents. patch: the gpupod.dev/in-use finalizer that keeps
# a YottaAccount's Secret until the last GpuPod using it is deleted (namespace deletion).
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get", "patch"]
# Tenants' YottaAccounts: listed and watched by kopf (an in-memory index: resolving a GpuPod's
# account costs no request), read by name after a lost swap; patch for the in-use finalizer
# and status.
- apiGroups: ["gpupod.dev"]
  resources: ["yottaaccounts"]
  verbs: ["get", "list", "watch", "patch"]
- apiGroups: ["gpupod.dev"]
  resources: ["yottaaccounts/status"]
  verbs: ["patch"]
# Events on GpuPods (ours and kopf's warnings).
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create"]
{{- end }}

{{/* Cluster-scoped reads kopf needs in any mode (read-only). */}}
{{- define "gpupod-operator.clusterRules" -}}
# kopf watches CRDs to notice the GpuPod CRD being installed or changed after it started.
- apiGroups: ["apiextensions.k8s.io"]
  resources: ["customresourcedefinitions"]
  verbs: ["list", "watch"]
# The platform's ClusterYottaAccounts: listed and watched by kopf (an in-memory index), read
# by name after a lost swap; patch for the in-use finalizer and status. A namespace's labels
# are read by name for allowedNamespaces.selector.
- apiGroups: ["gpupod.dev"]
  resources: ["clusteryottaaccounts"]
  verbs: ["get", "list", "watch", "patch"]
- apiGroups: ["gpupod.dev"]
  resources: ["clusteryottaaccounts/status"]
  verbs: ["patch"]
# The GpuTenantPolicies, checked again before every create from kopf's watch (read-only: the
# operator never writes a policy), and the labels of a GpuPod's namespace that their selectors
# match (and, without clusterId, the UID of kube-system: the default cluster id in remote pod
# names).
- apiGroups: ["gpupod.dev"]
  resources: ["gputenantpolicies"]
  verbs: ["list", "watch"]
- apiGroups: [""]
  resources: ["namespaces"]
  verbs: ["get"]
{{- if .Values.watchNamespaces }}
# With explicit namespaces kopf lists and watches namespace names to serve a watched
# namespace only while it exists.
- apiGroups: [""]
  resources: ["namespaces"]
  verbs: ["list", "watch"]
{{- end }}
{{- end }}

{{/* The leader election Lease (in the release namespace). */}}
{{- define "gpupod-operator.leaseName" -}}
{{ include "gpupod-operator.fullname" . }}
{{- end }}
