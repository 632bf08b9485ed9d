{{/*
Names, labels and the checks that fail a render with a clear message.
*/}}

{{- define "swapper.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Release-qualified name, at most 52 characters so suffixed names stay under 63. */}}
{{- define "swapper.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 52 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 52 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 52 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "swapper.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Selector labels. Call with (dict "ctx" $ "component" "webhook"). */}}
{{- define "swapper.selectorLabels" -}}
app.kubernetes.io/name: {{ include "swapper.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* Every label. Call with (dict "ctx" $ "component" "webhook"). */}}
{{- define "swapper.labels" -}}
helm.sh/chart: {{ include "swapper.chart" .ctx }}
{{ include "swapper.selectorLabels" . }}
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
app.kubernetes.io/part-of: swapper
{{- with .ctx.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "swapper.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "swapper.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "swapper.tlsSecretName" -}}
{{- default (printf "%s-tls" (include "swapper.fullname" .)) .Values.certificates.secretName -}}
{{- end -}}

{{- define "swapper.webhookConfigurationName" -}}
{{- include "swapper.fullname" . -}}
{{- end -}}

{{- define "swapper.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag -}}
{{- if .Values.image.digest -}}
{{- printf "%s:%s@%s" .Values.image.repository $tag .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository $tag -}}
{{- end -}}
{{- end -}}

{{- define "swapper.listenAddress" -}}
{{- if contains ":" .Values.server.host -}}
{{- printf "[%s]:%d" .Values.server.host (int .Values.server.port) -}}
{{- else -}}
{{- printf "%s:%d" .Values.server.host (int .Values.server.port) -}}
{{- end -}}
{{- end -}}

{{/*
Seconds in a Go duration ("8s", "1m30s", "500ms") or a number of seconds, as swapper reads them.
Call with (dict "key" "config.imageCopyDeadline" "value" $value).
*/}}
{{- define "swapper.seconds" -}}
{{- $value := .value -}}
{{- if or (kindIs "float64" $value) (kindIs "int" $value) (kindIs "int64" $value) -}}
{{- $value | float64 -}}
{{- else -}}
{{- $text := toString $value | trim -}}
{{- $number := "([0-9]+(\\.[0-9]*)?|\\.[0-9]+)" -}}
{{- $part := printf "%s(ns|us|µs|ms|s|m|h)" $number -}}
{{- if not (regexMatch (printf "^(%s)+$" $part) $text) -}}
{{- fail (printf "%s: %q is not a duration (examples: 8s, 1m30s, 500ms)" .key $text) -}}
{{- end -}}
{{- $units := dict "ns" 0.000000001 "us" 0.000001 "µs" 0.000001 "ms" 0.001 "s" 1.0 "m" 60.0 "h" 3600.0 -}}
{{- $total := 0.0 -}}
{{- range $piece := regexFindAll $part $text -1 -}}
{{- $amount := regexFind (printf "^%s" $number) $piece -}}
{{- $total = addf $total (mulf ($amount | float64) (get $units (trimPrefix $amount $piece))) -}}
{{- end -}}
{{- $total -}}
{{- end -}}
{{- end -}}

{{/*
The target type: config.target.type; when it is empty, "aws" if config.target.aws is set
(swapper's own default type, as in estahn/k8s-image-swapper's config), else the one of
config.target.gcp and config.target.generic that is set. Empty when none is, or both are.
*/}}
{{- define "swapper.targetType" -}}
{{- $target := .Values.config.target | default dict -}}
{{- if $target.type -}}
{{- $target.type -}}
{{- else if $target.aws -}}
aws
{{- else if and $target.gcp (not $target.generic) -}}
gcp
{{- else if and $target.generic (not $target.gcp) -}}
generic
{{- end -}}
{{- end -}}

{{/*
Values of estahn/k8s-image-swapper's chart that this chart does not take, each with what to
set instead. values.schema.json lets these keys through (patternProperties) only so that the
render fails here, with this message, rather than with the schema's "not allowed".
*/}}
{{- define "swapper.referenceValues" -}}
{{- $secretEnv := "use extraEnv with valueFrom.secretKeyRef (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY), or no static keys at all: an IRSA role in serviceAccount.annotations or EKS Pod Identity" -}}
{{- $replacements := dict
  "awsSecretName" $secretEnv
  "awsSecretKeys" $secretEnv
  "secretName" (printf "%s (the webhook's own TLS Secret is certificates.secretName)" $secretEnv)
  "secretReader" "use config.source.podPullSecrets: true (the chart then grants list and watch on pull secrets; secretNames has no equivalent, swapper reads only the two pull-secret types)"
  "patch" "use certificates.provider: job (swapper certs bootstrap, the default; its settings are under certificates.job); patch.enabled: false with cert-manager is certificates.provider: certManager"
  "certmanager" "use certificates.provider: certManager; issuerName is certificates.certManager.issuerRef.name, issuerKind is certificates.certManager.issuerRef.kind"
  "pdb" "use podDisruptionBudget (enabled, minAvailable or maxUnavailable)"
  "containerPort" "use server.port"
  "deployment" "deployment.priorityClassName is priorityClassName; deployment.annotations has no equivalent (podAnnotations annotates the pods)"
  "kubeVersionOverride" "not needed: the chart renders the same objects for every supported Kubernetes version; remove it"
  "podSecurityPolicy" "PodSecurityPolicy was removed in Kubernetes 1.25; the pods run non-root, read-only, with every capability dropped (podSecurityContext, securityContext); remove it"
  "dev" "no equivalent: run swapper on your machine with swapper serve (see the README); remove it"
  "extraManifests" "no equivalent: install extra objects with kubectl or a chart of their own"
  "extraManifestsTemplated" "no equivalent: install extra objects with kubectl or a chart of their own"
  "clusterSuffix" "not needed: the certificate names the Service both with and without the cluster domain; remove it"
  "test" "no helm test pod: the chart checks itself at render time; remove it"
  "cacheVolume" "not needed: swapper streams each layer from source to target and keeps nothing on disk; remove it"
-}}
{{- $found := list -}}
{{- range $key := keys $replacements | sortAlpha -}}
{{- if hasKey $.Values $key -}}
{{- $found = append $found (printf "  %s: %s" $key (get $replacements $key)) -}}
{{- end -}}
{{- end -}}
{{- if hasKey (.Values.service | default dict) "type" -}}
{{- $found = append $found "  service.type: not needed: the Service is always ClusterIP (the API server calls it inside the cluster); remove it" -}}
{{- end -}}
{{- if $found -}}
{{- fail (printf "values of estahn/k8s-image-swapper's chart that this chart does not take (docs/migrating.md lists every difference):\n%s" (join "\n" $found)) -}}
{{- end -}}
{{- end -}}

{{/*
The config file swapper reads: the `config:` block, with the keys the chart owns set by the
chart (where the certificate is mounted, the listen address, source.access.configMap: the
ConfigMap the chart creates for the access check's remembered answers, and
controller.leaseName: the Lease the chart's Role names), and only the selected target's block
kept (Helm merges a user's target over the default one).
*/}}
{{- define "swapper.config" -}}
{{- $config := deepCopy .Values.config -}}
{{- $target := $config.target -}}
{{- $selected := include "swapper.targetType" . -}}
{{- $_ := set $target "type" $selected -}}
{{- range $type := list "aws" "gcp" "generic" -}}
{{- if ne $type $selected -}}
{{- $_ := unset $target $type -}}
{{- end -}}
{{- end -}}
{{- $accessConfigMap := include "swapper.sourceAccessConfigMap" . -}}
{{- if $accessConfigMap -}}
{{- $source := $config.source | default dict -}}
{{- $access := $source.access | default dict -}}
{{- $_ := set $access "configMap" $accessConfigMap -}}
{{- $_ = set $source "access" $access -}}
{{- $_ = set $config "source" $source -}}
{{- end -}}
{{- $controller := $config.controller | default dict -}}
{{- $_ := set $controller "leaseName" (include "swapper.controllerLeaseName" .) -}}
{{- $_ = set $config "controller" $controller -}}
{{- $_ := set $config "listenAddress" (include "swapper.listenAddress" .) -}}
{{- $_ = set $config "tlsCertFile" "/etc/swapper/tls/tls.crt" -}}
{{- $_ = set $config "tlsKeyFile" "/etc/swapper/tls/tls.key" -}}
{{- toYaml $config -}}
{{- end -}}

{{/* Fails the render when values contradict each other. Included by every template. */}}
{{- define "swapper.validate" -}}
{{- include "swapper.referenceValues" . -}}
{{- $timeout := int .Values.webhook.timeoutSeconds | float64 -}}
{{- $deadlineValue := default "8s" .Values.config.imageCopyDeadline -}}
{{- $budgetValue := default "9s" .Values.config.admissionTimeout -}}
{{- $deadline := include "swapper.seconds" (dict "key" "config.imageCopyDeadline" "value" $deadlineValue) | float64 -}}
{{- $budget := include "swapper.seconds" (dict "key" "config.admissionTimeout" "value" $budgetValue) | float64 -}}
{{- if ge $deadline $timeout -}}
{{- fail (printf "config.imageCopyDeadline (%v) must be below webhook.timeoutSeconds (%vs): the API server stops waiting for swapper at timeoutSeconds and admits the pod unchanged, so a copy that may run longer can never be used. Lower config.imageCopyDeadline or raise webhook.timeoutSeconds (at most 30)." $deadlineValue .Values.webhook.timeoutSeconds) -}}
{{- end -}}
{{- if ge $budget $timeout -}}
{{- fail (printf "config.admissionTimeout (%v) must be below webhook.timeoutSeconds (%vs): swapper must answer before the API server gives up on it. Lower config.admissionTimeout or raise webhook.timeoutSeconds." $budgetValue .Values.webhook.timeoutSeconds) -}}
{{- end -}}
{{- if ge $deadline $budget -}}
{{- fail (printf "config.imageCopyDeadline (%v) must be below config.admissionTimeout (%v): swapper refuses to start otherwise." $deadlineValue $budgetValue) -}}
{{- end -}}
{{- $supervisor := .Values.config.supervisor | default dict -}}
{{- $shutdownValue := default "20s" $supervisor.shutdownTimeout -}}
{{- $shutdown := include "swapper.seconds" (dict "key" "config.supervisor.shutdownTimeout" "value" $shutdownValue) | float64 -}}
{{- $preStop := max 0 (int .Values.preStopSleepSeconds) | float64 -}}
{{- $grace := int .Values.terminationGracePeriodSeconds | float64 -}}
{{- if ge (addf $preStop $shutdown) $grace -}}
{{- fail (printf "config.supervisor.shutdownTimeout (%v) must be below terminationGracePeriodSeconds (%vs) less preStopSleepSeconds (%vs): the kubelet kills the container when the grace period ends, before swapper has stopped its tasks and released its Leases. Lower config.supervisor.shutdownTimeout or raise terminationGracePeriodSeconds." $shutdownValue .Values.terminationGracePeriodSeconds .Values.preStopSleepSeconds) -}}
{{- end -}}
{{- $controller := .Values.config.controller | default dict -}}
{{- $leaseDurationValue := default "15s" $controller.leaseDuration -}}
{{- $renewDeadlineValue := default "10s" $controller.renewDeadline -}}
{{- $retryPeriodValue := default "2s" $controller.retryPeriod -}}
{{- $leaseDuration := include "swapper.seconds" (dict "key" "config.controller.leaseDuration" "value" $leaseDurationValue) | float64 -}}
{{- $renewDeadline := include "swapper.seconds" (dict "key" "config.controller.renewDeadline" "value" $renewDeadlineValue) | float64 -}}
{{- $retryPeriod := include "swapper.seconds" (dict "key" "config.controller.retryPeriod" "value" $retryPeriodValue) | float64 -}}
{{- if le $leaseDuration $renewDeadline -}}
{{- fail (printf "config.controller.leaseDuration (%v) must be greater than config.controller.renewDeadline (%v): swapper refuses to start otherwise." $leaseDurationValue $renewDeadlineValue) -}}
{{- end -}}
{{- if le $renewDeadline (mulf $retryPeriod 1.2) -}}
{{- fail (printf "config.controller.renewDeadline (%v) must be greater than 1.2 x config.controller.retryPeriod (%v): swapper refuses to start otherwise." $renewDeadlineValue $retryPeriodValue) -}}
{{- end -}}
{{- $mirror := .Values.config.mirror | default dict -}}
{{- range $i, $rule := ($mirror.verify | default list) -}}
{{- range $key := ($rule.keys | default list) -}}
{{- if and (hasPrefix "/etc/swapper/cosign/" $key) (not $.Values.verify.keysSecret) -}}
{{- fail (printf "config.mirror.verify[%d].keys names %s, but verify.keysSecret is not set: nothing is mounted at /etc/swapper/cosign and swapper would refuse to start. Set verify.keysSecret to the Secret holding the cosign public keys." $i $key) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- $pdb := .Values.podDisruptionBudget -}}
{{- if and (not (kindIs "invalid" (index $pdb "minAvailable"))) (not (kindIs "invalid" (index $pdb "maxUnavailable"))) -}}
{{- fail "podDisruptionBudget: set minAvailable or maxUnavailable, not both (a PodDisruptionBudget accepts only one)." -}}
{{- end -}}
{{- if and (eq .Values.certificates.provider "job") .Values.certificates.certManager.issuerRef.name -}}
{{- fail "certificates.certManager.issuerRef is set but certificates.provider is \"job\": the two certificate modes exclude each other. Set certificates.provider=certManager to use the issuer, or unset the issuerRef." -}}
{{- end -}}
{{- $target := .Values.config.target | default dict -}}
{{- $type := include "swapper.targetType" . -}}
{{- if and (not $type) $target.gcp $target.generic -}}
{{- fail "config.target.gcp and config.target.generic are both set but config.target.type is not: set config.target.type to gcp or generic." -}}
{{- end -}}
{{- if not $type -}}
{{- fail "no target registry is set, and this chart has no default one. Set config.target.type and its block: any OCI registry: --set config.target.type=generic --set config.target.generic.registry=HOST[:PORT]/PATH; Amazon ECR: --set config.target.type=aws --set-string config.target.aws.accountId=123456789012 --set config.target.aws.region=eu-west-1; Artifact Registry: --set config.target.type=gcp with config.target.gcp.location, config.target.gcp.projectId and config.target.gcp.repositoryId (chart README, \"3. Pick your target registry\")." -}}
{{- end -}}
{{- if not (has $type (list "aws" "gcp" "generic")) -}}
{{- fail (printf "config.target.type %q is not aws, gcp or generic" $type) -}}
{{- end -}}
{{- if not (index $target $type) -}}
{{- fail (printf "config.target.type is %q but config.target.%s is missing" $type $type) -}}
{{- end -}}
{{- if not $target.type -}}
{{- /* The schema checks the required keys of an explicit type; these are for an inferred one. */ -}}
{{- $required := dict "aws" (list "accountId" "region") "gcp" (list "location" "projectId" "repositoryId") "generic" (list "registry") -}}
{{- $missing := list -}}
{{- range $key := get $required $type -}}
{{- if not (index $target $type $key) -}}
{{- $missing = append $missing (printf "config.target.%s.%s" $type $key) -}}
{{- end -}}
{{- end -}}
{{- if $missing -}}
{{- $names := dict "aws" "Amazon ECR (type aws, swapper's default)" "gcp" "Artifact Registry (type gcp)" "generic" "a generic OCI registry (type generic)" -}}
{{- fail (printf "config.target.%s is set without config.target.type, so the target is %s, which needs %s%s." $type (get $names $type) (join " and " $missing) (ternary " (the account id a quoted 12-digit string: --set-string on the command line)" "" (eq $type "aws"))) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
"true" when swapper follows the pods' pull secrets (config.source.podPullSecrets; swapper's own
default, when the key is removed, is on), else "".
*/}}
{{- define "swapper.podPullSecrets" -}}
{{- $source := .Values.config.source | default dict -}}
{{- $value := index $source "podPullSecrets" -}}
{{- if or (kindIs "invalid" $value) $value -}}true{{- end -}}
{{- end -}}

{{/*
The ConfigMap that remembers the source-access check's public answers: its name when
config.source.checkAccess is on (swapper's own default, when the key is removed, is on), else "".
*/}}
{{- define "swapper.sourceAccessConfigMap" -}}
{{- $source := .Values.config.source | default dict -}}
{{- $value := index $source "checkAccess" -}}
{{- if or (kindIs "invalid" $value) $value -}}
{{- printf "%s-source-access" (include "swapper.fullname" .) -}}
{{- end -}}
{{- end -}}

{{/*
"true" when the cluster half runs (config.controller.enabled; swapper's own default, when the
key is removed, is on), else "".
*/}}
{{- define "swapper.controller" -}}
{{- $controller := .Values.config.controller | default dict -}}
{{- $value := index $controller "enabled" -}}
{{- if or (kindIs "invalid" $value) $value -}}true{{- end -}}
{{- end -}}

{{/*
"true" when the cluster half runs and shares copies across pods with per-image Leases
(config.controller.shareCopies; swapper's own default, when the key is removed, is on), else "".
*/}}
{{- define "swapper.shareCopies" -}}
{{- $controller := .Values.config.controller | default dict -}}
{{- $value := index $controller "shareCopies" -}}
{{- if and (include "swapper.controller" .) (or (kindIs "invalid" $value) $value) -}}true{{- end -}}
{{- end -}}

{{/* The leader-election Lease: config.controller.leaseName, or "<fullname>-controller". */}}
{{- define "swapper.controllerLeaseName" -}}
{{- $controller := .Values.config.controller | default dict -}}
{{- $controller.leaseName | default (printf "%s-controller" (include "swapper.fullname" .)) -}}
{{- end -}}

{{/* "true" when the chart grants the cluster half's RBAC. */}}
{{- define "swapper.controllerNeedsRBAC" -}}
{{- if and .Values.rbac.create (include "swapper.controller" .) -}}true{{- end -}}
{{- end -}}

{{/* "true" when the webhook needs a ClusterRole at all. */}}
{{- define "swapper.webhookNeedsRBAC" -}}
{{- $pullSecret := .Values.config.target.pullSecret | default dict -}}
{{- if and .Values.rbac.create (or .Values.rbac.events (include "swapper.podPullSecrets" .) $pullSecret.enabled) -}}true{{- end -}}
{{- end -}}

{{/* The effective minimum number of webhook pods. */}}
{{- define "swapper.minReplicas" -}}
{{- if .Values.autoscaling.enabled -}}
{{- .Values.autoscaling.minReplicas -}}
{{- else -}}
{{- .Values.replicaCount -}}
{{- end -}}
{{- end -}}

{{/* Pod and container security contexts shared by the webhook and the certificate jobs. */}}
{{- define "swapper.podSecurityContext" -}}
{{- toYaml .Values.podSecurityContext -}}
{{- end -}}

{{- define "swapper.containerSecurityContext" -}}
{{- toYaml .Values.securityContext -}}
{{- end -}}

{{/*
RBAC rules of the certificate bootstrap (hook Job and renewal CronJob). Secrets: `create` cannot
be limited to a name (the name is not known when the request is authorised), everything else
is limited to the one TLS Secret. Call with $ and a kind: "namespaced" or "cluster".
*/}}
{{- define "swapper.certificateRules" -}}
{{- if eq .kind "namespaced" -}}
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["create"]
- apiGroups: [""]
  resources: ["secrets"]
  resourceNames: [{{ include "swapper.tlsSecretName" .ctx | quote }}]
  verbs: ["get", "patch"]
{{- else -}}
- apiGroups: ["admissionregistration.k8s.io"]
  resources: ["mutatingwebhookconfigurations"]
  resourceNames: [{{ include "swapper.webhookConfigurationName" .ctx | quote }}]
  verbs: ["get", "patch"]
{{- end }}
{{- end -}}

{{/* The container that runs `swapper certs bootstrap`. */}}
{{- define "swapper.bootstrapContainer" -}}
- name: certificates
  image: {{ include "swapper.image" . | quote }}
  imagePullPolicy: {{ .Values.image.pullPolicy }}
  args:
    - certs
    - bootstrap
    - --namespace={{ .Release.Namespace }}
    - --service={{ include "swapper.fullname" . }}
    - --secret={{ include "swapper.tlsSecretName" . }}
    - --webhook={{ include "swapper.webhookConfigurationName" . }}
    - --days={{ int .Values.certificates.job.validityDays }}
    - --renew-before-days={{ int .Values.certificates.job.renewBeforeDays }}
    - --label=app.kubernetes.io/name={{ include "swapper.name" . }}
    - --label=app.kubernetes.io/instance={{ .Release.Name }}
    - --label=app.kubernetes.io/managed-by=swapper-certs-bootstrap
    {{- range .Values.certificates.extraSANs }}
    - --san={{ . }}
    {{- end }}
  securityContext:
    {{- include "swapper.containerSecurityContext" . | nindent 4 }}
  resources:
    {{- toYaml .Values.certificates.job.resources | nindent 4 }}
{{- end -}}

{{/* Pod spec of the certificate Job and CronJob. Call with (dict "ctx" $ "serviceAccount" NAME). */}}
{{- define "swapper.certificatePodSpec" -}}
{{- $ := .ctx -}}
serviceAccountName: {{ .serviceAccount }}
automountServiceAccountToken: true
restartPolicy: Never
securityContext:
  {{- include "swapper.podSecurityContext" $ | nindent 2 }}
{{- with $.Values.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- with $.Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $.Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $.Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
containers:
  {{- include "swapper.bootstrapContainer" $ | nindent 2 }}
{{- end -}}
