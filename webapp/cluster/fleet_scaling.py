"""A model pool's replicas: scale it, autoscale it on vLLM's queue depth, wake it from zero.

The other half of the fleet (``webapp.cluster.fleet``: reads, create, remove, traffic split).
Replicas change through ``deployments/scale`` only, so the chat's Role needs no write access to
the Deployments themselves (``wake_pool``: get httproutes, get/patch deployments/scale; the chat
reads a model's replicas with ``model_replicas``: get httproutes, get deployments).
Autoscaling is an ``autoscaling/v2`` HPA on ``vllm:num_requests_waiting`` per replica, served
to the HPA by GKE's Custom Metrics Stackdriver Adapter from Google Cloud Managed Service for
Prometheus (``fleet_objects.WAITING_METRIC``). Bad input raises ``InvalidAutoscaling`` before
anything is written.
"""

from __future__ import annotations

from webapp.cluster import fleet_objects as fo
from webapp.cluster import pools
from webapp.cluster.errors import InvalidAutoscaling, ModelNotRouted
from webapp.cluster.fleet import get_or_none, get_pool, read_route
from webapp.cluster.fleet_objects import Autoscaling
from webapp.cluster.k8s import Cluster, call

JSON_MERGE = "application/merge-patch+json"

# ---------------------------------------------------------------- replicas


def scale_pool(cluster: Cluster, ns: str, name: str, replicas: int) -> None:
    """Set a pool's replicas (0 puts it to sleep) through ``deployments/scale``."""
    if isinstance(replicas, bool) or not isinstance(replicas, int):
        raise InvalidAutoscaling("The number of replicas must be a whole number.")
    if not 0 <= replicas <= pools.MAX_REPLICAS:
        raise InvalidAutoscaling(f"Replicas must be from 0 to {pools.MAX_REPLICAS}.")
    get_pool(cluster, ns, name)
    _patch_scale(cluster, ns, name, replicas)


def _patch_scale(cluster: Cluster, ns: str, name: str, replicas: int) -> dict:
    return call(
        f"scale Deployment {ns}/{name} to {replicas}",
        cluster.apps.patch_namespaced_deployment_scale,
        name,
        ns,
        {"spec": {"replicas": replicas}},
        _content_type=JSON_MERGE,
    )


def check_autoscaling(min_replicas: int, max_replicas: int, target_waiting: float) -> None:
    """Raise ``InvalidAutoscaling`` in plain words unless the bounds and target are usable."""
    for value in (min_replicas, max_replicas):
        if isinstance(value, bool) or not isinstance(value, int):
            raise InvalidAutoscaling("The minimum and maximum replicas must be whole numbers.")
    if not 0 <= min_replicas <= pools.MAX_REPLICAS or not 1 <= max_replicas <= pools.MAX_REPLICAS:
        raise InvalidAutoscaling(
            f"The minimum must be 0 to {pools.MAX_REPLICAS} and the maximum 1 to "
            f"{pools.MAX_REPLICAS} replicas."
        )
    if min_replicas > max_replicas:
        raise InvalidAutoscaling(
            f"The minimum ({min_replicas}) is above the maximum ({max_replicas}) replicas: "
            "lower the minimum or raise the maximum."
        )
    if isinstance(target_waiting, bool) or not isinstance(target_waiting, int | float):
        raise InvalidAutoscaling("The target queue depth must be a number.")
    if not 0 < target_waiting <= 1000:
        raise InvalidAutoscaling(
            "The target queue depth (requests waiting per replica) must be above 0 and at "
            "most 1000."
        )


def set_autoscaling(
    cluster: Cluster,
    ns: str,
    name: str,
    min_replicas: int,
    max_replicas: int,
    target_waiting: float,
) -> Autoscaling:
    """Write the pool's HPA on ``vllm:num_requests_waiting`` per replica (min 0: see
    ``fleet_objects.hpa_body``); replaces an existing one."""
    check_autoscaling(min_replicas, max_replicas, target_waiting)
    get_pool(cluster, ns, name)
    scaling = Autoscaling(min_replicas, max_replicas, float(target_waiting), min_replicas == 0)
    body = fo.hpa_body(name, scaling)
    current = get_or_none(
        f"read HPA {ns}/{name}",
        cluster.autoscaling.read_namespaced_horizontal_pod_autoscaler,
        name,
        ns,
    )
    if current is None:
        call(
            f"create HPA {ns}/{name}",
            cluster.autoscaling.create_namespaced_horizontal_pod_autoscaler,
            ns,
            body,
        )
    else:
        body["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
        call(
            f"update HPA {ns}/{name}",
            cluster.autoscaling.replace_namespaced_horizontal_pod_autoscaler,
            name,
            ns,
            body,
        )
    return scaling


def clear_autoscaling(cluster: Cluster, ns: str, name: str) -> None:
    """Remove the pool's HPA (its replicas stay where they are)."""
    get_pool(cluster, ns, name)
    get_or_none(
        f"delete HPA {ns}/{name}",
        cluster.autoscaling.delete_namespaced_horizontal_pod_autoscaler,
        name,
        ns,
    )


def wake_pool(cluster: Cluster, ns: str, model: str) -> str:
    """Wake the pools of ``model`` that are asleep (0 -> 1 replica; a pool at 1 or more is
    left alone) and return the name of the one taking most of its traffic. The chat calls it
    (its Role: get httproutes, get/patch deployments/scale)."""
    backends = fo.routed_models(read_route(cluster, ns)).get(model)
    if not backends:
        raise ModelNotRouted(model)
    for b in backends:
        if b.weight <= 0:
            continue
        scale = call(
            f"read the scale of Deployment {ns}/{b.pool}",
            cluster.apps.read_namespaced_deployment_scale,
            b.pool,
            ns,
        )
        if not (scale.get("spec") or {}).get("replicas"):
            _patch_scale(cluster, ns, b.pool, 1)
    return max(backends, key=lambda b: b.weight).pool


def model_replicas(cluster: Cluster, ns: str, model: str) -> list[tuple[int, int]]:
    """``(desired, ready)`` replicas of each pool taking a share of ``model``'s traffic (the
    ones ``wake_pool`` would wake); [] when no rule routes it. Reads only the route and those
    Deployments by name, so the chat's small Role allows it (get httproutes, get deployments);
    a routed pool whose Deployment is gone is left out."""
    backends = fo.routed_models(read_route(cluster, ns)).get(model) or ()
    found = []
    for b in backends:
        if b.weight <= 0:
            continue
        dep = get_or_none(
            f"read Deployment {ns}/{b.pool}", cluster.apps.read_namespaced_deployment, b.pool, ns
        )
        if dep is not None:
            status = dep.get("status") or {}
            found.append(
                (int(dep["spec"].get("replicas") or 0), int(status.get("readyReplicas") or 0))
            )
    return found
