"""Operating the GPU pool: the only package that talks to Kubernetes / GKE.

Modules: ``k8s`` (client construction, typed errors for calls), ``model_spec`` (what to
serve, validated; vLLM arguments), ``manifests`` (pure builders of the Deployment and pod),
``patches`` (pure switch/rollback/slot patches), ``switch`` (switch model, roll back),
``rollout`` (rollout status), ``lock`` (one switch at a time), ``scheduling``
(can the pool ever run a pod, which strategies fit: pure), ``inventory``
(pods, GPU nodes, events, logs), ``loading`` (a pod's loading phases and ETA: pure),
``telemetry`` (per-GPU DCGM metrics), ``node_pools`` (GKE node pools), ``errors`` (every
typed error, Kubernetes and GKE), ``gke_mapping`` (Google API errors mapped to them).
"""
