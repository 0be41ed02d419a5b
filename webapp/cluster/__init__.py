"""Operating the GPU pool: the only package that talks to Kubernetes / GKE.

Modules: ``k8s`` (client construction, typed errors for calls), ``manifests`` (pure
builders), ``switch`` (switch model, rollout status, rollback, lock), ``scheduling``
(can the pool ever run a pod, which strategies fit: pure), ``inventory``
(pods, GPU nodes, events, logs), ``loading`` (a pod's loading phases and ETA: pure),
``node_pools`` (GKE node pools), ``errors`` (the
exception hierarchy), ``gke_errors`` (node-pool errors, Google API errors mapped to them).
"""
