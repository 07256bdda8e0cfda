{{/* Checks across values that the schema cannot express; each fails the render with what to set. */}}
{{- define "pgkeel.validate" -}}
{{- $source := include "pgkeel.source" . }}
{{- if and (eq .Values.mode "standalone") (has $source (list "cnpg" "zalando")) (not .Values.config.kubernetes_cluster) }}
{{- fail (printf "config.kubernetes_cluster is required with config.source %s: set it to the name of the %s to follow" $source (ternary "CloudNativePG Cluster" "Zalando postgresql" (eq $source "cnpg"))) }}
{{- end }}
{{- if and (eq .Values.mode "standalone") (eq $source "static") (not .Values.config.candidates) }}
{{- fail "config.candidates is required with config.source static: list the PostgreSQL nodes as host:port" }}
{{- end }}
{{- if and (eq .Values.mode "standalone") (eq $source "patroni") (not .Values.config.patroni_urls) }}
{{- fail "config.patroni_urls is required with config.source patroni: list every member's REST API URL" }}
{{- end }}
{{- if and .Values.rbac.create (include "pgkeel.probeFromSecret" .) (not (include "pgkeel.rbacClusterNames" . | fromJsonArray)) (include "pgkeel.rbacSources" . | fromJsonArray) }}
{{- fail "probe_from_secret needs the cluster names to grant its Secret by name: set config.kubernetes_cluster or rbac.clusterNames" }}
{{- end }}
{{- $hpa := .Values.standalone.autoscaling }}
{{- if and (eq .Values.mode "standalone") $hpa.enabled (kindIs "invalid" $hpa.targetCPUUtilizationPercentage) (kindIs "invalid" $hpa.targetMemoryUtilizationPercentage) }}
{{- fail "standalone.autoscaling needs targetCPUUtilizationPercentage or targetMemoryUtilizationPercentage" }}
{{- end }}
{{- if and $hpa.enabled (gt (int $hpa.minReplicas) (int $hpa.maxReplicas)) }}
{{- fail "standalone.autoscaling.minReplicas is above maxReplicas" }}
{{- end }}
{{- if and (eq .Values.mode "sidecar-injector") .Values.metrics.serviceMonitor.enabled }}
{{- fail "metrics.serviceMonitor is for mode standalone; in sidecar-injector mode use metrics.podMonitor, which finds every injected sidecar" }}
{{- end }}
{{- if and (eq .Values.mode "standalone") .Values.standalone.terminationGracePeriodSeconds }}
{{- $config := include "pgkeel.proxyConfig" . | fromJson }}
{{- $needed := addf (include "pgkeel.durationSeconds" (index $config "drain_delay") | float64) (include "pgkeel.durationSeconds" (index $config "shutdown_timeout") | float64) }}
{{- if le (float64 .Values.standalone.terminationGracePeriodSeconds) $needed }}
{{- fail (printf "standalone.terminationGracePeriodSeconds (%v) must be above drain_delay + shutdown_timeout (%vs), or the kubelet kills pgkeel before its sessions finish" .Values.standalone.terminationGracePeriodSeconds $needed) }}
{{- end }}
{{- end }}
{{- $injector := .Values.sidecarInjector }}
{{- if and (eq .Values.mode "sidecar-injector") (gt (include "pgkeel.durationSeconds" $injector.drainDelay | float64) 600.0) }}
{{- fail (printf "sidecarInjector.drainDelay (%s) is above pgkeel inject-webhook's --drain-delay limit, 10m" $injector.drainDelay) }}
{{- end }}
{{- if and (eq .Values.mode "sidecar-injector") (not (kindIs "invalid" $injector.terminationGracePeriodSeconds)) }}
{{- $delay := include "pgkeel.durationSeconds" $injector.drainDelay | float64 }}
{{- if le (float64 $injector.terminationGracePeriodSeconds) $delay }}
{{- fail (printf "sidecarInjector.terminationGracePeriodSeconds (%v) must be above sidecarInjector.drainDelay (%vs), or the kubelet kills the webhook while it still serves its drain delay" $injector.terminationGracePeriodSeconds $delay) }}
{{- end }}
{{- end }}
{{- if and (eq .Values.mode "sidecar-injector") $injector.pdb.enabled (kindIs "invalid" $injector.pdb.minAvailable) (kindIs "invalid" $injector.pdb.maxUnavailable) }}
{{- fail "sidecarInjector.pdb needs minAvailable or maxUnavailable (or set sidecarInjector.pdb.enabled=false)" }}
{{- end }}
{{- end }}
