{{/*
`ray start --resources` from a map of custom resources: KubeRay passes the value to the
shell as is, so the JSON goes in double quotes with its own quotes escaped.
*/}}
{{- define "enclave.rayResourcesParam" -}}
{{- printf "%q" (toJson .) -}}
{{- end -}}

{{/*
Pod template of one Ray node group: (dict "root" $ "role" "head"|"worker" "group" "cpu" "spec" $groupValues)
The first container is the Ray container (KubeRay adds `ray start` and its own variables).
*/}}
{{- define "enclave.rayPodTemplate" -}}
{{- $root := .root -}}
{{- $v := $root.Values -}}
{{- $g := .spec -}}
{{- $head := eq .role "head" -}}
{{- $probes := ternary $v.probes.head $v.probes.worker $head -}}
{{- $component := ternary "ray-head" (printf "ray-worker-%s" .group) $head -}}
metadata:
  labels:
    {{- include "enclave.componentSelector" (dict "root" $root "component" $component) | nindent 4 }}
    app.kubernetes.io/part-of: enclave
    enclave.dev/ray-node: "true"
    {{- with $g.podLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  annotations:
    # A settings change rolls a new RayCluster (KubeRay's zero-downtime upgrade).
    checksum/settings: {{ include "enclave.settingsYaml" $root | sha256sum }}
    {{- with $v.ray.restartToken }}
    enclave.dev/restart-token: {{ . | toString | quote }}
    {{- end }}
    {{- with $g.podAnnotations }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  serviceAccountName: {{ include "enclave.serviceAccountName" $root }}
  # Only the head's autoscaler sidecar talks to the Kubernetes API.
  automountServiceAccountToken: {{ and $head $v.ray.autoscaler.enabled }}
  enableServiceLinks: false
  terminationGracePeriodSeconds: {{ $v.ray.terminationGracePeriodSeconds }}
  {{- with $v.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $g.priorityClassName }}
  priorityClassName: {{ . }}
  {{- end }}
  {{- with $g.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $g.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $g.affinity }}
  affinity:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  securityContext:
    {{- toYaml $v.podSecurityContext | nindent 4 }}
  {{- if $v.modelStore.verify.enabled }}
  initContainers:
    - name: verify-models
      image: {{ include "enclave.image" $root }}
      imagePullPolicy: {{ $v.image.pullPolicy }}
      command: ["enclave", "models", "verify"]
      env:
        {{- include "enclave.env" $root | nindent 8 }}
      resources:
        {{- toYaml $v.modelStore.verify.resources | nindent 8 }}
      securityContext:
        {{- toYaml $v.containerSecurityContext | nindent 8 }}
      volumeMounts:
        {{- include "enclave.commonVolumeMounts" $root | nindent 8 }}
        - name: models
          mountPath: {{ include "enclave.modelStoreDir" $root }}
          readOnly: true
  {{- end }}
  containers:
    - name: {{ ternary "ray-head" "ray-worker" $head }}
      image: {{ include "enclave.image" $root }}
      imagePullPolicy: {{ $v.image.pullPolicy }}
      env:
        {{- include "enclave.env" $root | nindent 8 }}
      ports:
        {{- if $head }}
        - name: gcs-server
          containerPort: 6379
        - name: dashboard
          containerPort: 8265
        - name: client
          containerPort: 10001
        {{- end }}
        - name: serve
          containerPort: {{ $v.serve.port }}
        - name: metrics
          containerPort: {{ $v.metrics.port }}
      {{- $resources := deepCopy $g.resources }}
      {{- if not $head }}{{- if hasKey $g "gpusPerPod" }}
      {{- $_ := set $resources "limits" (merge (dict "nvidia.com/gpu" $g.gpusPerPod) (default (dict) $resources.limits)) }}
      {{- $_ := set $resources "requests" (merge (dict "nvidia.com/gpu" $g.gpusPerPod) (default (dict) $resources.requests)) }}
      {{- end }}{{- end }}
      resources:
        {{- toYaml $resources | nindent 8 }}
      securityContext:
        {{- toYaml $v.containerSecurityContext | nindent 8 }}
      {{- if $probes.startup.enabled }}
      startupProbe:
        {{- include "enclave.httpProbe" (dict "probe" $probes.startup) | nindent 8 }}
      {{- end }}
      {{- if $probes.liveness.enabled }}
      livenessProbe:
        {{- include "enclave.httpProbe" (dict "probe" $probes.liveness) | nindent 8 }}
      {{- end }}
      {{- if $probes.readiness.enabled }}
      readinessProbe:
        {{- include "enclave.httpProbe" (dict "probe" $probes.readiness) | nindent 8 }}
      {{- end }}
      volumeMounts:
        {{- include "enclave.commonVolumeMounts" $root | nindent 8 }}
        - name: models
          mountPath: {{ include "enclave.modelStoreDir" $root }}
          readOnly: true
        - name: knowledge
          mountPath: {{ printf "%s/knowledge" (include "enclave.dataDir" $root) }}
        # Named and placed as KubeRay expects, so it adds no second volume at these paths.
        - name: ray-logs
          mountPath: /tmp/ray
        - name: shared-mem
          mountPath: /dev/shm
  volumes:
    {{- include "enclave.commonVolumes" (dict "root" $root "configMap" (include "enclave.settingsConfigMapName" $root)) | nindent 4 }}
    - name: models
      persistentVolumeClaim:
        claimName: {{ include "enclave.modelStoreClaimName" $root }}
        readOnly: true
    - name: knowledge
      persistentVolumeClaim:
        claimName: {{ include "enclave.knowledgeStoreClaimName" $root }}
    - name: ray-logs
      emptyDir:
        sizeLimit: {{ $v.scratch.rayTmpSizeLimit }}
    - name: shared-mem
      emptyDir:
        medium: Memory
        sizeLimit: {{ $v.scratch.shmSizeLimit }}
{{- end -}}
