{{/* Names, labels and the values the templates share. */}}

{{- define "pgkeel.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* <release>-<chart>, or the release name when it already contains the chart name; 50
characters at most, leaving room for the "-webhook-tls" style suffixes. */}}
{{- define "pgkeel.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 50 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 50 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 50 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* Name of a cluster-scoped object: the namespace keeps two releases of one name apart. */}}
{{- define "pgkeel.clusterScopedName" -}}
{{- printf "%s-%s" .Release.Namespace (include "pgkeel.fullname" .) | trunc 253 | trimSuffix "-" }}
{{- end }}

{{- define "pgkeel.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "pgkeel.labels" -}}
helm.sh/chart: {{ include "pgkeel.chart" . }}
app.kubernetes.io/name: {{ include "pgkeel.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: pgkeel
{{- end }}

{{/* Labels of the chart's pods: the selector labels and the chart's others. */}}
{{- define "pgkeel.podLabels" -}}
{{ include "pgkeel.selectorLabels" . }}
helm.sh/chart: {{ include "pgkeel.chart" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: pgkeel
{{- end }}

{{/* Selector labels of the chart's pods; the component tells the proxy from the webhook. */}}
{{- define "pgkeel.selectorLabels" -}}
app.kubernetes.io/name: {{ include "pgkeel.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: {{ include "pgkeel.component" . }}
{{- end }}

{{- define "pgkeel.component" -}}
{{- if eq .Values.mode "sidecar-injector" }}injector{{ else }}proxy{{ end }}
{{- end }}

{{- define "pgkeel.tag" -}}
{{- default .Chart.AppVersion .Values.image.tag }}
{{- end }}

{{- define "pgkeel.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (include "pgkeel.tag" .) }}
{{- end }}
{{- end }}

{{- define "pgkeel.sidecarImage" -}}
{{- $repo := default .Values.image.repository .Values.sidecar.image.repository }}
{{- if and (not .Values.sidecar.image.repository) (not .Values.sidecar.image.tag) .Values.image.digest }}
{{- printf "%s@%s" $repo .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" $repo (default (include "pgkeel.tag" .) .Values.sidecar.image.tag) }}
{{- end }}
{{- end }}

{{- define "pgkeel.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "pgkeel.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "pgkeel.sidecarServiceAccountName" -}}
{{- printf "%s-sidecar" (include "pgkeel.fullname" .) }}
{{- end }}

{{- define "pgkeel.source" -}}
{{- default "static" .Values.config.source | lower }}
{{- end }}

{{/* "true" when the standalone pgkeel reads the Kubernetes API (cnpg or zalando through the pod's
service account, not a kubeconfig file). */}}
{{- define "pgkeel.needsToken" -}}
{{- $source := include "pgkeel.source" . }}
{{- if and (eq .Values.mode "standalone") (has $source (list "cnpg" "zalando")) (not .Values.config.kubeconfig) }}true{{ end }}
{{- end }}

{{/* Seconds in a pgkeel duration such as 5s, 500ms, 1m30s or 1h (a float). */}}
{{- define "pgkeel.durationSeconds" -}}
{{- $total := 0.0 }}
{{- range regexFindAll "[0-9]+(\\.[0-9]+)?(ms|h|m|s)" (toString .) -1 }}
{{- $number := float64 (regexFind "^[0-9]+(\\.[0-9]+)?" .) }}
{{- $unit := trimPrefix (regexFind "^[0-9]+(\\.[0-9]+)?" .) . }}
{{- $factor := dict "ms" 0.001 "s" 1.0 "m" 60.0 "h" 3600.0 }}
{{- $total = addf $total (mulf $number (index $factor $unit)) }}
{{- end }}
{{- $total }}
{{- end }}

{{/* The configuration keys with empty values left out. */}}
{{- define "pgkeel.nonEmpty" -}}
{{- $out := dict }}
{{- range $key, $value := . }}
{{- if not (or (kindIs "invalid" $value) (and (kindIs "string" $value) (eq $value "")) (and (kindIs "slice" $value) (empty $value))) }}
{{- $_ := set $out $key $value }}
{{- end }}
{{- end }}
{{- toJson $out }}
{{- end }}

{{/* Chart defaults for the probe's credentials: the operator's Secret for cnpg and zalando.
Standalone: when config.source is one of them and no probeCredentials Secret is given. Sidecars
(which probeCredentials does not reach): when the RBAC grants cnpg or zalando, whatever the helm
test's config.source; the webhook drops the key for pods following patroni or static. */}}
{{- define "pgkeel.probeDefaults" -}}
{{- $defaults := dict }}
{{- if eq .Values.mode "sidecar-injector" }}
{{- $sources := include "pgkeel.rbacSources" . | fromJsonArray }}
{{- if or (has "cnpg" $sources) (has "zalando" $sources) }}
{{- $_ := set $defaults "probe_from_secret" true }}
{{- end }}
{{- else if and (has (include "pgkeel.source" .) (list "cnpg" "zalando")) (not .Values.probeCredentials.existingSecret) }}
{{- $_ := set $defaults "probe_from_secret" true }}
{{- end }}
{{- toJson $defaults }}
{{- end }}

{{/* dict a with the keys of dict b it does not have (sprig's merge would also replace a false or a
0 in a: mergo treats them as empty). */}}
{{- define "pgkeel.withDefaults" -}}
{{- $out := deepCopy (index . 0) }}
{{- range $key, $value := index . 1 }}
{{- if not (hasKey $out $key) }}{{ $_ := set $out $key $value }}{{ end }}
{{- end }}
{{- toJson $out }}
{{- end }}

{{/* The standalone pgkeel's configuration (a JSON object): the listeners the chart sets, then
`config`, then the chart's defaults for keys `config` does not set. */}}
{{- define "pgkeel.proxyConfig" -}}
{{- $config := include "pgkeel.nonEmpty" .Values.config | fromJson }}
{{- $config = omit $config "listen_primary" "listen_replica" "admin_listen" }}
{{- $_ := set $config "listen_primary" "0.0.0.0:6432" }}
{{- $_ = set $config "listen_replica" "0.0.0.0:6433" }}
{{- $_ = set $config "admin_listen" "0.0.0.0:9432" }}
{{- $defaults := include "pgkeel.probeDefaults" . | fromJson }}
{{- $_ = set $defaults "drain_delay" "5s" }}
{{- $_ = set $defaults "shutdown_timeout" "30s" }}
{{- include "pgkeel.withDefaults" (list $config $defaults) }}
{{- end }}

{{/* The sidecars' configuration: `sidecar.config` over `config`, without the keys the webhook
sets from the pod's annotations. */}}
{{- define "pgkeel.sidecarConfig" -}}
{{- $base := include "pgkeel.nonEmpty" .Values.config | fromJson }}
{{- $base = omit $base "source" "kubernetes_cluster" "kubernetes_namespace" "candidates" "patroni_urls" }}
{{- $over := include "pgkeel.nonEmpty" .Values.sidecar.config | fromJson }}
{{- $config := include "pgkeel.withDefaults" (list $over $base) | fromJson }}
{{- include "pgkeel.withDefaults" (list $config (include "pgkeel.probeDefaults" . | fromJson)) }}
{{- end }}

{{/* Renders a configuration object as YAML; whole numbers stay integers (no 1e+06). */}}
{{- define "pgkeel.configYaml" -}}
{{- range $key, $value := . }}
{{- if kindIs "slice" $value }}
{{ $key }}:
{{- range $value }}
  - {{ toString . | quote }}
{{- end }}
{{- else if kindIs "bool" $value }}
{{ $key }}: {{ $value }}
{{- else if or (kindIs "float64" $value) (kindIs "int64" $value) (kindIs "int" $value) }}
{{ $key }}: {{ int64 $value }}
{{- else }}
{{ $key }}: {{ toString $value | quote }}
{{- end }}
{{- end }}
{{- end }}

{{/* Discovery sources the RBAC grants (a JSON list). */}}
{{- define "pgkeel.rbacSources" -}}
{{- $sources := .Values.rbac.sources }}
{{- if not $sources }}
{{- $source := include "pgkeel.source" . }}
{{- if has $source (list "cnpg" "zalando") }}{{ $sources = list $source }}{{ end }}
{{- end }}
{{- toJson (default (list) $sources | uniq) }}
{{- end }}

{{- define "pgkeel.rbacNamespaces" -}}
{{- toJson (default (list (default .Release.Namespace .Values.config.kubernetes_namespace)) .Values.rbac.namespaces | uniq) }}
{{- end }}

{{- define "pgkeel.rbacClusterNames" -}}
{{- $names := .Values.rbac.clusterNames }}
{{- if and (not $names) .Values.config.kubernetes_cluster }}{{ $names = list .Values.config.kubernetes_cluster }}{{ end }}
{{- toJson (default (list) $names | uniq) }}
{{- end }}

{{/* Whether the probe reads the operator's Secret, in the configuration the chart renders. */}}
{{- define "pgkeel.probeFromSecret" -}}
{{- $config := include "pgkeel.proxyConfig" . | fromJson }}
{{- if eq .Values.mode "sidecar-injector" }}{{ $config = include "pgkeel.sidecarConfig" . | fromJson }}{{ end }}
{{- $value := index $config "probe_from_secret" }}
{{- if has (toString $value | lower) (list "true" "on" "yes" "1") }}true{{ end }}
{{- end }}

{{/* The pod spec fields every Deployment of the chart shares. */}}
{{- define "pgkeel.podPassthrough" -}}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.priorityClassName }}
priorityClassName: {{ . | quote }}
{{- end }}
{{- with .Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- $affinity := deepCopy (default (dict) .Values.affinity) }}
{{- if and (eq .Values.mode "sidecar-injector") (not .Values.topologySpreadConstraints) (not $affinity.podAntiAffinity) }}
{{- /* The webhook's replicas on different nodes when the user spreads them in no other way: a node
that goes down then takes one replica, not all (with failurePolicy Fail, annotated pods wait on it). */ -}}
{{- $term := dict "topologyKey" "kubernetes.io/hostname" "labelSelector" (dict "matchLabels" (include "pgkeel.selectorLabels" . | fromYaml)) }}
{{- $_ := set $affinity "podAntiAffinity" (dict "preferredDuringSchedulingIgnoredDuringExecution" (list (dict "weight" 100 "podAffinityTerm" $term))) }}
{{- end }}
{{- with $affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- if .Values.topologySpreadConstraints }}
{{- $constraints := list }}
{{- range .Values.topologySpreadConstraints }}
{{- $constraint := deepCopy . }}
{{- if not (hasKey $constraint "labelSelector") }}
{{- $_ := set $constraint "labelSelector" (dict "matchLabels" (include "pgkeel.selectorLabels" $ | fromYaml)) }}
{{- end }}
{{- $constraints = append $constraints $constraint }}
{{- end }}
topologySpreadConstraints:
  {{- toYaml $constraints | nindent 2 }}
{{- end }}
{{- end }}

{{/* The webhook's sidecar config file (pgkeel inject-webhook --sidecar-config). */}}
{{- define "pgkeel.sidecarYaml" -}}
# The sidecar pgkeel inject-webhook adds to annotated pods; rendered by the Helm chart.
image: {{ include "pgkeel.sidecarImage" . | quote }}
imagePullPolicy: {{ default .Values.image.pullPolicy .Values.sidecar.image.pullPolicy }}
failurePolicy: {{ .Values.sidecarInjector.failurePolicy }}
listenAddress: {{ .Values.sidecar.listenAddress | quote }}
ports:
  primary: {{ .Values.sidecar.ports.primary }}
  replica: {{ .Values.sidecar.ports.replica }}
  admin: {{ .Values.sidecar.ports.admin }}
drainTimeout: {{ .Values.sidecar.drainTimeout | quote }}
resources:
  {{- toYaml .Values.sidecar.resources | nindent 2 }}
{{- with .Values.sidecar.securityContext }}
securityContext:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- $config := include "pgkeel.sidecarConfig" . | fromJson }}
{{- if $config }}
config:
  {{- include "pgkeel.configYaml" $config | trim | nindent 2 }}
{{- else }}
config: {}
{{- end }}
{{- end }}

{{/* The Secret the helm test pod logs in with; fails the render when there is none it can read. */}}
{{- define "pgkeel.testSecret" -}}
{{- $source := include "pgkeel.source" . }}
{{- $cluster := .Values.config.kubernetes_cluster }}
{{- $secret := .Values.test.credentialsSecret.name }}
{{- if not $secret }}
{{- if and (eq $source "cnpg") $cluster }}
{{- $secret = printf "%s-app" $cluster }}
{{- else if and (eq $source "zalando") $cluster }}
{{- $secret = printf "postgres.%s.credentials.postgresql.acid.zalan.do" $cluster }}
{{- else }}
{{- fail "test.credentialsSecret.name is required (the Secret with the user and password the helm test logs in with), or set test.enabled=false" }}
{{- end }}
{{- $clusterNs := default .Release.Namespace .Values.config.kubernetes_namespace }}
{{- if ne $clusterNs .Release.Namespace }}
{{- fail (printf "the helm test pod cannot log in with the operator's Secret %s: it is in namespace %s (config.kubernetes_namespace), and a pod reads Secrets (secretKeyRef) of its own namespace only, the release namespace %s. Copy the Secret into namespace %s and set test.credentialsSecret.name to the copy's name, or set test.enabled=false" $secret $clusterNs .Release.Namespace .Release.Namespace) }}
{{- end }}
{{- end }}
{{- $secret }}
{{- end }}

{{/* The webhook pod's terminationGracePeriodSeconds: sidecarInjector.terminationGracePeriodSeconds,
else drainDelay + 10s. */}}
{{- define "pgkeel.webhookGrace" -}}
{{- $grace := .Values.sidecarInjector.terminationGracePeriodSeconds }}
{{- if kindIs "invalid" $grace }}
{{- $grace = add (include "pgkeel.durationSeconds" .Values.sidecarInjector.drainDelay | float64 | ceil | int64) 10 }}
{{- end }}
{{- int64 $grace }}
{{- end }}
