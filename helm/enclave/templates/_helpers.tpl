{{/* Names, labels, the image, and the pieces every Enclave container shares. */}}

{{- define "enclave.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
The full name. KubeRay derives longer names from the RayService name (the RayCluster
`<name>-<5 chars>`, pods, `<name>-serve-svc`, `<name>-head-svc`), so it is kept to 40
characters.
*/}}
{{- define "enclave.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "enclave.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "enclave.selectorLabels" -}}
app.kubernetes.io/name: {{ include "enclave.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "enclave.labels" -}}
helm.sh/chart: {{ include "enclave.chart" . }}
{{ include "enclave.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: enclave
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Labels of one component: (dict "root" $ "component" "ray-head") */}}
{{- define "enclave.componentLabels" -}}
{{ include "enclave.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "enclave.componentSelector" -}}
{{ include "enclave.selectorLabels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* Ray pods carry this label (head and every worker group): the NetworkPolicies use it. */}}
{{- define "enclave.rayPodSelector" -}}
{{ include "enclave.selectorLabels" . }}
enclave.dev/ray-node: "true"
{{- end -}}

{{- define "enclave.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "enclave.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* The image, pinned: a digest when given, else the tag (default: the chart's appVersion). */}}
{{- define "enclave.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{- define "enclave.settingsConfigMapName" -}}
{{- printf "%s-settings" (include "enclave.fullname" .) -}}
{{- end -}}

{{- define "enclave.modelStoreClaimName" -}}
{{- default (printf "%s-models" (include "enclave.fullname" .)) .Values.modelStore.existingClaim -}}
{{- end -}}

{{- define "enclave.knowledgeStoreClaimName" -}}
{{- default (printf "%s-knowledge" (include "enclave.fullname" .)) .Values.knowledgeStore.existingClaim -}}
{{- end -}}

{{/* KubeRay's Service in front of the Serve proxies of the active cluster. */}}
{{- define "enclave.serveServiceName" -}}
{{- printf "%s-serve-svc" (include "enclave.fullname" .) -}}
{{- end -}}

{{- define "enclave.canaryBaseUrl" -}}
{{- default (printf "http://%s.%s.svc:%d" (include "enclave.serveServiceName" .) .Release.Namespace (int .Values.serve.port)) .Values.canary.baseUrl -}}
{{- end -}}

{{/* Fixed paths inside every Enclave container. */}}
{{- define "enclave.configDir" -}}/etc/enclave{{- end -}}
{{- define "enclave.secretsDir" -}}/etc/enclave-secrets{{- end -}}
{{- define "enclave.dataDir" -}}/var/lib/enclave{{- end -}}
{{- define "enclave.modelStoreDir" -}}/models{{- end -}}

{{/*
Secrets mounted as files, as a JSON list of {volume, secret, key, file, env, value?}: the
settings read keys from files (`*_file` fields), so a key never sits in an environment dump;
`env` receives `value` when given (a list of files), else the file's path.
*/}}
{{- define "enclave.secretFiles" -}}
{{- $files := list -}}
{{- $dir := include "enclave.secretsDir" . -}}
{{- if and .Values.redis.enabled .Values.redis.password.existingSecret -}}
{{- $files = append $files (dict "volume" "secret-redis-password" "secret" .Values.redis.password.existingSecret "key" .Values.redis.password.key "file" (printf "%s/redis/password" $dir) "env" "ENCLAVE_LIMITS__REDIS_PASSWORD_FILE") -}}
{{- end -}}
{{- if .Values.apiKeys.pepper.existingSecret -}}
{{- $files = append $files (dict "volume" "secret-api-key-pepper" "secret" .Values.apiKeys.pepper.existingSecret "key" .Values.apiKeys.pepper.key "file" (printf "%s/api-keys/pepper" $dir) "env" "ENCLAVE_AUTH__API_KEYS__PEPPER_FILE") -}}
{{- end -}}
{{- if .Values.audit.signingKey.existingSecret -}}
{{- $files = append $files (dict "volume" "secret-audit-signing-key" "secret" .Values.audit.signingKey.existingSecret "key" .Values.audit.signingKey.key "file" (printf "%s/audit/signing-key" $dir) "env" .Values.audit.signingKey.envName) -}}
{{- end -}}
{{- with .Values.history.vaultKey -}}
{{- if .existingSecret -}}
{{- $files = append $files (dict "volume" "secret-history-vault-key" "secret" .existingSecret "key" .key "file" (printf "%s/history/vault-key" $dir) "env" "ENCLAVE_HISTORY__VAULT_KEY_FILE") -}}
{{- end -}}
{{- end -}}
{{- with .Values.history.retiredVaultKey -}}
{{- if .existingSecret -}}
{{- $retired := printf "%s/history-retired/vault-key" $dir -}}
{{- $files = append $files (dict "volume" "secret-history-retired-vault-key" "secret" .existingSecret "key" .key "file" $retired "env" "ENCLAVE_HISTORY__RETIRED_VAULT_KEY_FILES" "value" (list $retired | toJson)) -}}
{{- end -}}
{{- end -}}
{{- toJson $files -}}
{{- end -}}

{{/*
Environment of every container that runs Enclave code. The offline block mirrors
serving/runtime_env.py `offline_environment` for the data dir below (a test compares them).
*/}}
{{- define "enclave.env" -}}
{{- $data := include "enclave.dataDir" . -}}
{{- $cache := printf "%s/cache" $data -}}
{{- $kv := 1 -}}
{{- with .Values.settings.llm -}}{{- with .primary -}}{{- if hasKey . "kv_cache_space_gib" -}}{{- $kv = .kv_cache_space_gib -}}{{- end -}}{{- end -}}{{- end -}}
- name: ENCLAVE_CONFIG_DIR
  value: {{ include "enclave.configDir" . | quote }}
- name: ENCLAVE_PATHS__DATA_DIR
  value: {{ $data | quote }}
- name: ENCLAVE_PATHS__MODEL_STORE_DIR
  value: {{ include "enclave.modelStoreDir" . | quote }}
- name: HOME
  value: {{ printf "%s/home" $data | quote }}
- name: HF_HUB_OFFLINE
  value: "1"
- name: TRANSFORMERS_OFFLINE
  value: "1"
- name: HF_HUB_DISABLE_TELEMETRY
  value: "1"
- name: HF_HOME
  value: {{ printf "%s/huggingface" $cache | quote }}
- name: VLLM_NO_USAGE_STATS
  value: "1"
- name: VLLM_DO_NOT_TRACK
  value: "1"
- name: DO_NOT_TRACK
  value: "1"
- name: RAY_USAGE_STATS_ENABLED
  value: "0"
# Serve's HTTP proxies check the client's X-Request-ID before Ray adopts and echoes it.
- name: RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH
  value: serving.proxy_request_ids.proxy_middlewares
# Serve's fast path (ray.serve_fast_path, ADR 0009): replica code and handle routers on each
# replica's own event loop; request-path logs in batches.
- name: RAY_SERVE_RUN_USER_CODE_IN_SEPARATE_THREAD
  value: "0"
- name: RAY_SERVE_RUN_ROUTER_IN_SEPARATE_LOOP
  value: "0"
- name: RAY_SERVE_REQUEST_PATH_LOG_BUFFER_SIZE
  value: "1000"
- name: VLLM_CACHE_ROOT
  value: {{ printf "%s/vllm" $cache | quote }}
- name: VLLM_HOST_IP
  value: "127.0.0.1"
- name: VLLM_CPU_KVCACHE_SPACE
  value: {{ $kv | toString | quote }}
- name: TLDEXTRACT_CACHE
  value: {{ printf "%s/tldextract" $cache | quote }}
- name: TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS
  value: ""
- name: TOKENIZERS_PARALLELISM
  value: "false"
- name: MPLCONFIGDIR
  value: {{ printf "%s/matplotlib" $cache | quote }}
- name: TORCHINDUCTOR_CACHE_DIR
  value: {{ printf "%s/torchinductor" $cache | quote }}
- name: TRITON_CACHE_DIR
  value: {{ printf "%s/triton" $cache | quote }}
- name: ENCLAVE_DATABASE__URL
  valueFrom:
    secretKeyRef:
      name: {{ .Values.database.existingSecret | quote }}
      key: {{ .Values.database.urlKey | quote }}
{{- if .Values.redis.enabled }}
- name: ENCLAVE_LIMITS__STORE
  value: redis
- name: ENCLAVE_LIMITS__REDIS_URL
  value: {{ .Values.redis.url | quote }}
{{- end }}
{{- if .Values.otlp.enabled }}
- name: {{ .Values.otlp.envName }}
  value: {{ .Values.otlp.endpoint | quote }}
{{- end }}
{{- range (include "enclave.secretFiles" . | fromJsonArray) }}
- name: {{ .env }}
  value: {{ .value | default .file | quote }}
{{- end }}
{{- range .Values.extraSecretEnv }}
- name: {{ .name }}
  valueFrom:
    secretKeyRef:
      name: {{ .existingSecret | quote }}
      key: {{ .key | quote }}
{{- end }}
{{- range .Values.extraEnv }}
- name: {{ .name }}
  value: {{ .value | toString | quote }}
{{- end }}
{{- end -}}

{{/* Volumes every Enclave pod mounts: (dict "root" $ "configMap" name) */}}
{{- define "enclave.commonVolumes" -}}
- name: settings
  configMap:
    name: {{ .configMap }}
- name: data
  emptyDir:
    sizeLimit: {{ .root.Values.scratch.dataSizeLimit }}
- name: tmp
  emptyDir:
    sizeLimit: {{ .root.Values.scratch.tmpSizeLimit }}
{{- range (include "enclave.secretFiles" .root | fromJsonArray) }}
- name: {{ .volume }}
  secret:
    secretName: {{ .secret | quote }}
    defaultMode: 0440
    items:
      - key: {{ .key | quote }}
        path: {{ base .file }}
{{- end }}
{{- end -}}

{{- define "enclave.commonVolumeMounts" -}}
- name: settings
  mountPath: {{ include "enclave.configDir" . }}
  readOnly: true
- name: settings
  mountPath: {{ printf "%s/home/ray_bootstrap_config.yaml" (include "enclave.dataDir" .) }}
  subPath: ray_bootstrap_config.yaml
  readOnly: true
- name: data
  mountPath: {{ include "enclave.dataDir" . }}
- name: tmp
  mountPath: /tmp
{{- range (include "enclave.secretFiles" . | fromJsonArray) }}
- name: {{ .volume }}
  mountPath: {{ dir .file }}
  readOnly: true
{{- end }}
{{- end -}}

{{/* settings.yaml as rendered from values (the chart-owned parts arrive as variables). */}}
{{- define "enclave.settingsYaml" -}}
# Rendered by the enclave chart from .Values.settings. Paths and connection settings come
# from ENCLAVE_* variables on the containers; `enclave config` prints the effective result.
{{ if .Values.settings }}{{ toYaml .Values.settings }}{{ else }}{}{{ end }}
{{- end -}}

{{- define "enclave.rayBootstrapYaml" -}}
# Ray reads ~/ray_bootstrap_config.yaml; naming a provider stops its usage-stats module from
# probing cloud metadata endpoints (ADR 0002).
provider:
  type: local
{{- end -}}

{{/* An httpGet probe from values: (dict "probe" $values) */}}
{{- define "enclave.httpProbe" -}}
httpGet:
  path: {{ .probe.path }}
  port: {{ .probe.port }}
initialDelaySeconds: {{ .probe.initialDelaySeconds }}
periodSeconds: {{ .probe.periodSeconds }}
timeoutSeconds: {{ .probe.timeoutSeconds }}
failureThreshold: {{ .probe.failureThreshold }}
successThreshold: 1
{{- end -}}

{{/*
The canary's pod spec (CronJob and `helm test`): one conversation through the API with a
service account's key. It holds no database or model secrets: only the key.
*/}}
{{- define "enclave.canaryPodSpec" -}}
restartPolicy: Never
automountServiceAccountToken: false
enableServiceLinks: false
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
containers:
  - name: canary
    image: {{ include "enclave.image" . }}
    imagePullPolicy: {{ .Values.image.pullPolicy }}
    command: ["enclave", "canary", "--base-url", {{ include "enclave.canaryBaseUrl" . | quote }}]
    env:
      - name: HOME
        value: /tmp
      - name: ENCLAVE_PATHS__DATA_DIR
        value: /tmp/enclave
      - name: HF_HUB_OFFLINE
        value: "1"
      - name: {{ .Values.canary.apiKey.envName }}
        valueFrom:
          secretKeyRef:
            name: {{ .Values.canary.apiKey.existingSecret | quote }}
            key: {{ .Values.canary.apiKey.key | quote }}
      # Each run is recorded in the database (canary_runs), where every API replica reads
      # it for its /metrics: Prometheus never scrapes this short-lived pod.
      - name: ENCLAVE_DATABASE__URL
        valueFrom:
          secretKeyRef:
            name: {{ .Values.database.existingSecret | quote }}
            key: {{ .Values.database.urlKey | quote }}
    resources:
      {{- toYaml .Values.canary.resources | nindent 6 }}
    securityContext:
      {{- toYaml .Values.containerSecurityContext | nindent 6 }}
    volumeMounts:
      - name: tmp
        mountPath: /tmp
volumes:
  - name: tmp
    emptyDir:
      sizeLimit: 64Mi
{{- end -}}
