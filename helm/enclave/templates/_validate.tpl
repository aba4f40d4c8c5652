{{/*
Cross-field checks the schema cannot express. Every problem is collected and reported at
once, so one `helm template` run tells the whole story.
*/}}
{{- define "enclave.validate" -}}
{{- $v := .Values -}}
{{- $errors := list -}}

{{- /* The image is pinned: a digest, or a tag other than latest. */ -}}
{{- if and (not $v.image.digest) (eq (default .Chart.AppVersion $v.image.tag) "latest") -}}
{{- $errors = append $errors "image.tag: `latest` is not a pinned version; set a release tag or image.digest" -}}
{{- end -}}

{{- /* The chart owns paths and connection settings. */ -}}
{{- $settings := default (dict) $v.settings -}}
{{- if hasKey $settings "paths" -}}
{{- $errors = append $errors "settings.paths: the chart sets the data dir and the model store (ENCLAVE_PATHS__*); remove it" -}}
{{- end -}}
{{- with $settings.database -}}{{- if or (hasKey . "url") (hasKey . "url_file") -}}
{{- $errors = append $errors "settings.database.url: never inline; the URL comes from database.existingSecret" -}}
{{- end -}}{{- end -}}
{{- with $settings.limits -}}{{- if or (hasKey . "store") (hasKey . "redis_url") (hasKey . "redis_password_file") -}}
{{- $errors = append $errors "settings.limits.store/redis_*: set them through redis.* instead" -}}
{{- end -}}{{- end -}}

{{- /* Secrets are references. */ -}}
{{- if not $v.database.existingSecret -}}
{{- $errors = append $errors "database.existingSecret: name the Secret that holds the database URL" -}}
{{- end -}}
{{- if and $v.canary.enabled (not $v.canary.apiKey.existingSecret) -}}
{{- $errors = append $errors "canary.apiKey.existingSecret: the canary needs an API key from a Secret" -}}
{{- end -}}
{{- if and $v.redis.enabled (regexMatch "^[a-z]+://[^/@]*:[^/@]*@" $v.redis.url) -}}
{{- $errors = append $errors "redis.url: must not carry a password; use redis.password.existingSecret" -}}
{{- end -}}
{{- range $v.extraEnv -}}
{{- if regexMatch "(?i)(password|secret|token|key|pepper|credential)" .name -}}
{{- $errors = append $errors (printf "extraEnv.%s: looks like a secret; use extraSecretEnv (a Secret reference)" .name) -}}
{{- end -}}
{{- end -}}
{{- if and $v.otlp.enabled (not $v.otlp.endpoint) -}}
{{- $errors = append $errors "otlp.endpoint: required when otlp.enabled" -}}
{{- end -}}

{{- /* Shared limits need Redis once there is more than one API replica. */ -}}
{{- $apiScale := $v.serve.deployments.api.autoscaling -}}
{{- $apiMax := 1 -}}
{{- if $apiScale.enabled -}}{{- $apiMax = int $apiScale.maxReplicas -}}
{{- else -}}{{- with $settings.api -}}{{- $apiMax = int (default 1 .num_replicas) -}}{{- end -}}{{- end -}}
{{- if and (gt $apiMax 1) (not $v.redis.enabled) -}}
{{- $errors = append $errors (printf "redis.enabled: up to %d API replicas share rate limits and quotas only through Redis; enable it or run one replica" $apiMax) -}}
{{- end -}}

{{- /* Serve autoscaling bounds. */ -}}
{{- range $name, $d := $v.serve.deployments -}}
{{- if and $d.autoscaling.enabled (gt (int $d.autoscaling.minReplicas) (int $d.autoscaling.maxReplicas)) -}}
{{- $errors = append $errors (printf "serve.deployments.%s.autoscaling: minReplicas > maxReplicas" $name) -}}
{{- end -}}
{{- end -}}

{{- /* Worker groups: at least one, sane bounds. */ -}}
{{- $anyWorkers := false -}}
{{- range $name, $g := $v.ray.workers -}}
{{- if $g.enabled -}}
{{- $anyWorkers = true -}}
{{- if or (gt (int $g.minReplicas) (int $g.replicas)) (gt (int $g.replicas) (int $g.maxReplicas)) -}}
{{- $errors = append $errors (printf "ray.workers.%s: need minReplicas <= replicas <= maxReplicas (got %v <= %v <= %v)" $name $g.minReplicas $g.replicas $g.maxReplicas) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- if and (not $anyWorkers) (eq (toString $v.ray.head.numCpus) "0") -}}
{{- $errors = append $errors "ray.workers: no worker group is enabled and the head offers no CPUs; nothing could run" -}}
{{- end -}}

{{- /* GPUs asked for by the models and GPU workers to run them agree. */ -}}
{{- $gpuModels := list -}}
{{- with $settings.llm -}}
{{- range $role := list "primary" "fallback" -}}
{{- $m := index $.Values.settings.llm $role -}}
{{- if and $m (kindIs "map" $m) -}}{{- with $m.resources -}}{{- if gt (float64 (default 0 .num_gpus)) 0.0 -}}
{{- $gpuModels = append $gpuModels $role -}}
{{- end -}}{{- end -}}{{- end -}}
{{- end -}}
{{- end -}}
{{- if and $gpuModels (not $v.ray.workers.gpu.enabled) -}}
{{- $errors = append $errors (printf "ray.workers.gpu.enabled: settings.llm.%s asks for GPUs but no GPU worker group is enabled; its replicas would never start" (join "/" $gpuModels)) -}}
{{- end -}}
{{- if and $v.ray.workers.gpu.enabled (not $gpuModels) -}}
{{- $errors = append $errors "settings.llm.primary.resources.num_gpus: the GPU worker group is enabled but no model asks for a GPU; the GPUs would sit idle" -}}
{{- end -}}

{{- /* Placement: every custom resource a deployment asks for is offered by some enabled group. */ -}}
{{- $offered := keys (default (dict) $v.ray.head.customResources) -}}
{{- range $name, $g := $v.ray.workers -}}{{- if $g.enabled -}}{{- $offered = concat $offered (keys (default (dict) $g.customResources)) -}}{{- end -}}{{- end -}}
{{- $asks := dict -}}
{{- with $settings.api -}}{{- $_ := set $asks "settings.api.placement" .placement -}}{{- end -}}
{{- with $settings.llm -}}{{- range $role := list "primary" "fallback" -}}{{- $m := index $settings.llm $role -}}
{{- if and $m (kindIs "map" $m) -}}{{- with $m.resources -}}{{- $_ := set $asks (printf "settings.llm.%s.resources.placement" $role) .placement -}}{{- end -}}{{- end -}}
{{- end -}}{{- end -}}
{{- range $section := list "pii" "guard" "retrieval" -}}{{- with index $settings $section -}}{{- with .resources -}}
{{- $_ := set $asks (printf "settings.%s.resources.placement" $section) .placement -}}
{{- end -}}{{- end -}}{{- end -}}
{{- range $path := keys $asks | sortAlpha -}}
{{- $placement := index $asks $path -}}
{{- if and $placement (kindIs "map" $placement) -}}
{{- range $resource := keys (default (dict) $placement.custom_resources) | sortAlpha -}}
{{- if not (has $resource $offered) -}}
{{- $errors = append $errors (printf "%s.custom_resources.%s: no enabled Ray group offers it (ray.head/workers.*.customResources); its replicas would never start" $path $resource) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- /* PodDisruptionBudgets: exactly one of minAvailable/maxUnavailable. */ -}}
{{- $pdbs := dict "ray.head.pdb" $v.ray.head.pdb "ray.workers.cpu.pdb" $v.ray.workers.cpu.pdb "ray.workers.gpu.pdb" $v.ray.workers.gpu.pdb -}}
{{- range $path, $pdb := $pdbs -}}
{{- if $pdb.enabled -}}
{{- $min := not (kindIs "invalid" $pdb.minAvailable) -}}
{{- $max := not (kindIs "invalid" $pdb.maxUnavailable) -}}
{{- if eq $min $max -}}
{{- $errors = append $errors (printf "%s: set exactly one of minAvailable and maxUnavailable (the other null)" $path) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- /* Network policy: every egress names its peers; the autoscaler needs the API server. */ -}}
{{- if $v.networkPolicy.enabled -}}
{{- range $i, $rule := $v.networkPolicy.extraEgress -}}
{{- if not $rule.to -}}
{{- $errors = append $errors (printf "networkPolicy.extraEgress[%d]: has no `to`; it would allow egress to anywhere" $i) -}}
{{- end -}}
{{- end -}}
{{- if and $v.ray.autoscaler.enabled (not $v.networkPolicy.kubernetesApi.cidrs) -}}
{{- $errors = append $errors "networkPolicy.kubernetesApi.cidrs: the autoscaler needs the API server's addresses (kubectl get endpoints kubernetes)" -}}
{{- end -}}
{{- end -}}

{{- if $errors -}}
{{- fail (printf "\n\nThe enclave chart found %d problem(s) in its values:\n  - %s\n" (len $errors) (join "\n  - " $errors)) -}}
{{- end -}}
{{- end -}}
