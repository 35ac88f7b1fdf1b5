{{/*
Chart name (nameOverride wins).
*/}}
{{- define "repricer.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 52 | trimSuffix "-" }}
{{- end }}

{{/*
Fully qualified name. Truncated to 52 characters, not 63: the StatefulSet controller
adds "-<10-char hash>" to the name in the controller-revision-hash label (max 63).
If the release name already contains the chart name it is used as is.
*/}}
{{- define "repricer.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 52 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Headless Service that gives the StatefulSet pod its stable DNS name.
*/}}
{{- define "repricer.headlessName" -}}
{{- printf "%s-headless" (include "repricer.fullname" .) }}
{{- end }}

{{/*
chart label: name-version.
*/}}
{{- define "repricer.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Standard app.kubernetes.io labels for every object.
*/}}
{{- define "repricer.labels" -}}
helm.sh/chart: {{ include "repricer.chart" . }}
{{ include "repricer.selectorLabels" . }}
{{- if .Chart.AppVersion }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end }}
app.kubernetes.io/component: server
app.kubernetes.io/part-of: repricer
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/*
Selector labels. Immutable on a StatefulSet: never add to these.
*/}}
{{- define "repricer.selectorLabels" -}}
app.kubernetes.io/name: {{ include "repricer.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
ServiceAccount name.
*/}}
{{- define "repricer.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "repricer.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
Container image: repository@digest when a digest is given, else repository:tag
(tag defaults to the chart's appVersion).
*/}}
{{- define "repricer.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/*
OTEL_SERVICE_NAME: otel.serviceName, or the full name.
*/}}
{{- define "repricer.otelServiceName" -}}
{{- default (include "repricer.fullname" .) .Values.otel.serviceName }}
{{- end }}

{{/*
Whole seconds (rounded up) of a humantime duration restricted to h/m/s/ms units,
e.g. "20s" -> 20, "1m 30s" -> 90, "1500ms" -> 2. The schema guarantees the format.
Usage: include "repricer.durationSeconds" "20s"
*/}}
{{- define "repricer.durationSeconds" -}}
{{- $total := 0.0 }}
{{- range $part := regexFindAll "[0-9]+(ms|h|m|s)" . -1 }}
{{- $n := regexFind "^[0-9]+" $part | float64 }}
{{- $unit := regexReplaceAll "^[0-9]+" $part "" }}
{{- if eq $unit "h" }}{{ $total = addf $total (mulf $n 3600) }}
{{- else if eq $unit "m" }}{{ $total = addf $total (mulf $n 60) }}
{{- else if eq $unit "s" }}{{ $total = addf $total $n }}
{{- else if eq $unit "ms" }}{{ $total = addf $total (divf $n 1000) }}
{{- end }}
{{- end }}
{{- ceil $total | int }}
{{- end }}

{{/*
terminationGracePeriodSeconds = drainTimeout (rounded up) + margin, so the kubelet's
SIGKILL can never cut a drain that is still within REPRICER_DRAIN_TIMEOUT.
*/}}
{{- define "repricer.terminationGracePeriodSeconds" -}}
{{- $drain := include "repricer.durationSeconds" .Values.drainTimeout | int }}
{{- add $drain (.Values.terminationGraceMarginSeconds | default 15 | int) }}
{{- end }}

{{/*
Pod-level security context shared by the server and the test pod: non-root 65532
(the distroless "nonroot" user), volume group 65532, RuntimeDefault seccomp.
*/}}
{{- define "repricer.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
fsGroup: 65532
# Only chown the volume when its root is not already group 65532: no full re-chown
# of every segment file at each start.
fsGroupChangePolicy: OnRootMismatch
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/*
Container-level security context shared by the server and the test pod.
*/}}
{{- define "repricer.containerSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
readOnlyRootFilesystem: true
allowPrivilegeEscalation: false
privileged: false
capabilities:
  drop:
    - ALL
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/*
OTEL_RESOURCE_ATTRIBUTES: pod, namespace and version, plus otel.resourceAttributes.
$(POD_NAME)/$(POD_NAMESPACE) are expanded by the kubelet from the env vars above them.
*/}}
{{- define "repricer.otelResourceAttributes" -}}
{{- $attrs := list "k8s.pod.name=$(POD_NAME)" "k8s.namespace.name=$(POD_NAMESPACE)" (printf "service.version=%s" (default .Chart.AppVersion .Values.image.tag)) }}
{{- with .Values.otel.resourceAttributes }}
{{- $attrs = append $attrs . }}
{{- end }}
{{- join "," $attrs }}
{{- end }}

{{/*
Labels of the helm-test pod: same instance, different name, so that no Service,
PDB or ServiceMonitor selector of the server matches it.
*/}}
{{- define "repricer.testLabels" -}}
helm.sh/chart: {{ include "repricer.chart" . }}
app.kubernetes.io/name: {{ include "repricer.name" . }}-test
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: test
app.kubernetes.io/part-of: repricer
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}
