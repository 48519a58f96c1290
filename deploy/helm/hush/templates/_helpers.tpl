{{/* Chart name, truncated to a DNS label. */}}
{{- define "hush.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Full name of every object: the release name, or <release>-<chart> when it doesn't contain it. */}}
{{- define "hush.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Labels that select the injector pods. */}}
{{- define "hush.selectorLabels" -}}
app.kubernetes.io/name: {{ include "hush.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: injector
{{- end -}}

{{/* Labels on every object. */}}
{{- define "hush.labels" -}}
{{ include "hush.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: hush
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{/* An image reference pinned by digest when one is given, else by tag (default: appVersion).
     Argument: (dict "image" <repository/tag/digest> "root" $) */}}
{{- define "hush.image" -}}
{{- $img := .image -}}
{{- if $img.digest -}}
{{- printf "%s@%s" $img.repository $img.digest -}}
{{- else -}}
{{- printf "%s:%s" $img.repository (default .root.Chart.AppVersion $img.tag) -}}
{{- end -}}
{{- end -}}

{{/* Name of the TLS Secret holding tls.crt and tls.key. */}}
{{- define "hush.tlsSecretName" -}}
{{- default (printf "%s-tls" (include "hush.fullname" .)) .Values.tls.secretName -}}
{{- end -}}

{{/* The Service's DNS name inside the cluster. */}}
{{- define "hush.serviceHost" -}}
{{- printf "%s.%s.svc" (include "hush.fullname" .) .Release.Namespace -}}
{{- end -}}

{{/* Where the serving certificate is mounted. */}}
{{- define "hush.tlsDir" -}}/etc/hush/tls{{- end -}}

{{/* The injector's config file (injector/src/config.rs, camelCase, unknown fields refused). Built as a
     dict and serialised with toYaml, so values are quoted by the serialiser, never by hand. */}}
{{- define "hush.injectorConfig" -}}
{{- $v := .Values -}}
{{- $server := dict
      "listen" (printf "0.0.0.0:%d" (int $v.service.webhookPort))
      "healthListen" (printf "0.0.0.0:%d" (int $v.service.metricsPort))
      "tlsReloadIntervalSeconds" (int $v.server.tlsReloadIntervalSeconds)
      "maxBodyBytes" (int $v.server.maxBodyBytes)
      "shutdownGraceSeconds" (int $v.server.shutdownGraceSeconds) -}}
{{- if ne $v.tls.mode "selfManaged" -}}
{{- $_ := set $server "tlsCertFile" (printf "%s/tls.crt" (include "hush.tlsDir" .)) -}}
{{- $_ := set $server "tlsKeyFile" (printf "%s/tls.key" (include "hush.tlsDir" .)) -}}
{{- end -}}
{{- $s := $v.sidecar -}}
{{- /* Quantities as strings (`cpu: 1` in values is a number; the injector wants "1"). */ -}}
{{- $res := dict -}}
{{- range $section, $m := $s.resources -}}
{{- $d := dict -}}
{{- range $k, $q := $m -}}
{{- $_ := set $d $k (toString $q) -}}
{{- end -}}
{{- $_ := set $res $section $d -}}
{{- end -}}
{{- /* The injected container; how the sidecar behaves is the `operator` section. */ -}}
{{- $sidecar := dict
      "image" (include "hush.image" (dict "image" $s.image "root" .))
      "imagePullPolicy" $s.image.pullPolicy
      "runAsUser" (int64 $s.runAsUser)
      "runAsGroup" (int64 $s.runAsGroup)
      "resources" $res
      "secretsSizeLimit" $s.secretsSizeLimit -}}
{{- /* `operator` is the sidecar's OperatorSettings as is (see the README's injector configuration);
     its values keep their old places in values.yaml (sidecar.*, vault.*, aws.*, audit). */ -}}
{{- $operator := dict
      "metricsPort" (int $s.metricsPort)
      "fetchDeadlineSeconds" (int $s.fetchDeadlineSeconds)
      "defaultRefreshSeconds" (int $s.defaultRefreshSeconds)
      "minRefreshSeconds" (int $s.minRefreshSeconds)
      "maxRefreshSeconds" (int $s.maxRefreshSeconds)
      "maxFileBytes" (int64 $s.maxFileBytes)
      "audit" $v.audit -}}
{{- if $v.vault.addr -}}
{{- $vault := dict
      "addr" $v.vault.addr
      "authMount" $v.vault.authMount
      "approleMount" $v.vault.approleMount
      "audience" $v.vault.audience -}}
{{- if $v.vault.caPem -}}
{{- $_ := set $vault "caPem" $v.vault.caPem -}}
{{- end -}}
{{- if $v.vault.namespace -}}
{{- $_ := set $vault "namespace" $v.vault.namespace -}}
{{- end -}}
{{- if $v.vault.allowedNamespaces -}}
{{- $_ := set $vault "allowedNamespaces" $v.vault.allowedNamespaces -}}
{{- end -}}
{{- if $v.vault.revokeCertificates -}}
{{- $_ := set $vault "revokeCertificates" $v.vault.revokeCertificates -}}
{{- end -}}
{{- $_ := set $operator "vault" $vault -}}
{{- end -}}
{{- if $v.aws.region -}}
{{- $aws := dict "region" $v.aws.region -}}
{{- if $v.aws.endpoint -}}
{{- $_ := set $aws "endpoint" $v.aws.endpoint -}}
{{- end -}}
{{- $_ := set $operator "aws" $aws -}}
{{- end -}}
{{- /* What only the injector uses: the projected tokens' lifetimes. */ -}}
{{- $cfg := dict
      "server" $server
      "sidecar" $sidecar
      "operator" $operator
      "vault" (dict "tokenExpirationSeconds" (int $v.vault.tokenExpirationSeconds))
      "aws" (dict "tokenExpirationSeconds" (int $v.aws.tokenExpirationSeconds)) -}}
{{- if $v.allowedRoles -}}
{{- $_ := set $cfg "allowedRoles" $v.allowedRoles -}}
{{- end -}}
{{- $_ := set $cfg "podSecurity" (dict
      "allowFsGroup" $v.podSecurity.allowFsGroup
      "fsGroup" (int64 $v.podSecurity.fsGroup)
      "allowShareProcessNamespace" $v.podSecurity.allowShareProcessNamespace) -}}
{{- toYaml $cfg -}}
{{- end -}}

{{/* The namespaceSelector shared by every webhook: never kube-system (by default) or the release
     namespace, so the injector never admits its own pods. */}}
{{- define "hush.namespaceSelector" -}}
{{- $excluded := concat .Values.webhook.excludeNamespaces (list .Release.Namespace) | uniq -}}
namespaceSelector:
  matchExpressions:
    - key: kubernetes.io/metadata.name
      operator: NotIn
      values:
        {{- toYaml $excluded | nindent 8 }}
    {{- with .Values.webhook.namespaceSelectorExpressions }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
{{- end -}}

{{/* The webhook's clientConfig for a path. Argument: (dict "path" "/mutate" "root" $) */}}
{{- define "hush.clientConfig" -}}
{{- $root := .root -}}
clientConfig:
  service:
    name: {{ include "hush.fullname" $root }}
    namespace: {{ $root.Release.Namespace }}
    path: {{ .path }}
    port: {{ $root.Values.service.port }}
  {{- if and (eq $root.Values.tls.mode "secret") $root.Values.tls.caBundle }}
  caBundle: {{ $root.Values.tls.caBundle }}
  {{- end }}
{{- end -}}

{{/* Annotations of the webhook configurations (cert-manager's CA injection). */}}
{{- define "hush.webhookAnnotations" -}}
{{- if eq .Values.tls.mode "certManager" }}
  annotations:
    cert-manager.io/inject-ca-from: {{ printf "%s/%s" .Release.Namespace (include "hush.fullname" .) }}
{{- end }}
{{- end -}}
