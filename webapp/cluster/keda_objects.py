"""Pure builders and readers of a pool's scale-to-zero objects (KEDA; the I/O is
``webapp.cluster.fleet_scaling``).

GKE's HPA cannot take a Deployment to 0 replicas (an alpha feature gate), so autoscaling with
min 0 is a KEDA ``ScaledObject`` (``keda.sh/v1alpha1``) on the pool's Deployment, as in GKE's
tutorial "Scale to zero using KEDA". KEDA runs the HPA ``keda-hpa-<pool>`` for 1..max replicas
and itself takes the pool to 0 after ``COOLDOWN_SECONDS`` without a request, and from 0 to 1
when the trigger is active again.

The trigger is a ``prometheus`` query against Google Cloud Managed Service for Prometheus
(its Prometheus HTTP API, ``GMP_QUERY_URL``), authenticated by KEDA's operator through
Workload Identity (a ``TriggerAuthentication`` with ``podIdentity: {provider: gcp}``; the
Google service account needs ``roles/monitoring.viewer``). The query sums the requests waiting
and running on the pool's pods (vLLM's ``vllm:num_requests_waiting`` and
``vllm:num_requests_running``, scraped by a PodMonitoring; pods are picked by name, the
Deployment's ``<pool>-<hash>-<suffix>``) plus the pool's replicas that are wanted but not yet
available (GKE's kube-state-metrics package for Deployments, ``--monitoring=...,DEPLOYMENT``:
``kube_deployment_spec_replicas`` minus ``kube_deployment_status_replicas_available``). That last term keeps a pool the chat woke
(0 -> 1) active while its model loads: KEDA scales an inactive target whose cooldown has
passed back to 0 at its next poll, and a loading vLLM has no requests yet. The metric type is
KEDA's default ``AverageValue``: the HPA aims at ``threshold`` (the admin's target) per replica.
"""

from __future__ import annotations

from webapp.cluster.fleet_objects import Autoscaling

KEDA_GROUP = "keda.sh"
KEDA_VERSION = "v1alpha1"
TRIGGER_AUTH_NAME = "gmp-workload-identity"
# A GPU pod takes minutes to be scheduled (often on a new node) and load its model: going to
# sleep after 10 minutes without a request (KEDA's default is 5) spares the next user a cold
# start after a short pause, and costs at most 10 idle GPU-minutes.
COOLDOWN_SECONDS = 600
POLLING_SECONDS = 15
GMP_QUERY_URL = "https://monitoring.googleapis.com/v1/projects/{project}/location/global/prometheus"


def hpa_name(pool: str) -> str:
    """The HPA KEDA makes for the pool's ScaledObject (its default name)."""
    return f"keda-hpa-{pool}"


def pool_query(namespace: str, pool: str) -> str:
    """The PromQL KEDA runs: requests waiting + running on the pool's pods + replicas still
    starting (each term ``or vector(0)``: an empty sum would make the whole sum empty)."""
    pods = f'namespace="{namespace}",pod=~"{pool}-[a-z0-9]+-[a-z0-9]+"'
    dep = f'namespace="{namespace}",deployment="{pool}"'
    return (
        f"(sum(vllm:num_requests_waiting{{{pods}}}) or vector(0))"
        f" + (sum(vllm:num_requests_running{{{pods}}}) or vector(0))"
        f" + (sum(kube_deployment_spec_replicas{{{dep}}})"
        f" - sum(kube_deployment_status_replicas_available{{{dep}}}) or vector(0))"
    )


def trigger_authentication() -> dict:
    """The namespace's one TriggerAuthentication: KEDA's operator identity on Google Cloud."""
    return {
        "apiVersion": f"{KEDA_GROUP}/{KEDA_VERSION}",
        "kind": "TriggerAuthentication",
        "metadata": {"name": TRIGGER_AUTH_NAME},
        "spec": {"podIdentity": {"provider": "gcp"}},
    }


def scaled_object(namespace: str, pool: str, scaling: Autoscaling, project: str) -> dict:
    """The pool's ScaledObject: 0..max replicas on the pool's queue, ``target_waiting``
    requests per replica, asleep after ``COOLDOWN_SECONDS`` idle."""
    return {
        "apiVersion": f"{KEDA_GROUP}/{KEDA_VERSION}",
        "kind": "ScaledObject",
        "metadata": {"name": pool},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": pool},
            "minReplicaCount": 0,
            "maxReplicaCount": scaling.max_replicas,
            "cooldownPeriod": COOLDOWN_SECONDS,
            "pollingInterval": POLLING_SECONDS,
            "triggers": [
                {
                    "type": "prometheus",
                    "metadata": {
                        "serverAddress": GMP_QUERY_URL.format(project=project),
                        "query": pool_query(namespace, pool),
                        "threshold": f"{scaling.target_waiting:g}",
                        "activationThreshold": "0",
                    },
                    "authenticationRef": {"name": TRIGGER_AUTH_NAME},
                }
            ],
        },
    }


def read_scaled_object(obj: dict) -> Autoscaling:
    """What a ScaledObject written by ``scaled_object`` says."""
    spec = obj.get("spec") or {}
    target = 0.0
    for trigger in spec.get("triggers") or []:
        if trigger.get("type") == "prometheus":
            target = float((trigger.get("metadata") or {}).get("threshold") or 0)
    low = spec.get("minReplicaCount", 0)
    return Autoscaling(
        min_replicas=low,
        max_replicas=spec.get("maxReplicaCount", 100),
        target_waiting=target,
        scale_to_zero=low == 0,
    )
