"""A model pool's replicas: scale it, autoscale it on vLLM's queue depth, wake it from zero.

The other half of the fleet (``webapp.cluster.fleet``: reads, create, remove, traffic split).
Replicas change through ``deployments/scale`` only, so the chat's Role needs no write access to
the Deployments themselves (``wake_pool``: get httproutes, get/patch deployments/scale; the chat
reads a model's replicas with ``model_replicas``: get httproutes, get deployments).
Autoscaling is an ``autoscaling/v2`` HPA on ``vllm:num_requests_waiting`` per replica, served
to the HPA by GKE's Custom Metrics Stackdriver Adapter from Google Cloud Managed Service for
Prometheus (``fleet_objects.WAITING_METRIC``); with min 0 it is a KEDA ScaledObject instead
(``keda_objects``), which takes an idle pool to 0 and back. Bad input raises ``InvalidAutoscaling`` before
anything is written.
"""

from __future__ import annotations

from webapp.cluster import fleet_objects as fo
from webapp.cluster import keda_objects as ko
from webapp.cluster import pools
from webapp.cluster.errors import InvalidAutoscaling, KedaNotInstalled, ModelNotRouted, NotFound
from webapp.cluster.fleet import get_or_none, get_pool, read_route
from webapp.cluster.fleet_objects import Autoscaling
from webapp.cluster.k8s import Cluster, call

JSON_MERGE = "application/merge-patch+json"
KEDA_V = (ko.KEDA_GROUP, ko.KEDA_VERSION)

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


def check_autoscaling(
    min_replicas: int, max_replicas: int, target_waiting: float, *, project: str | None = None
) -> None:
    """Raise ``InvalidAutoscaling`` in plain words unless the bounds and target are usable;
    with ``project`` given (``""``: not configured), also unless min 0 has a project for KEDA
    to query."""
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
    if min_replicas == 0 and project is not None and not project:
        raise InvalidAutoscaling(
            "Scale to zero queries Google Cloud Managed Service for Prometheus: set "
            "GKE_PROJECT, or choose a minimum of 1."
        )


def set_autoscaling(
    cluster: Cluster,
    ns: str,
    name: str,
    min_replicas: int,
    max_replicas: int,
    target_waiting: float,
    *,
    project: str = "",
) -> Autoscaling:
    """Autoscale the pool on its queue: min >= 1 is our HPA on ``vllm:num_requests_waiting``
    per replica; min 0 is a KEDA ScaledObject (``keda_objects``; GKE's HPA cannot go to 0),
    which needs the Google Cloud ``project`` whose managed Prometheus KEDA queries. Whichever
    of the two the pool had is replaced (the old one is deleted first: KEDA refuses a target
    another HPA already scales)."""
    check_autoscaling(min_replicas, max_replicas, target_waiting, project=project)
    get_pool(cluster, ns, name)
    scaling = Autoscaling(min_replicas, max_replicas, float(target_waiting), min_replicas == 0)
    if scaling.scale_to_zero:
        _ensure_trigger_auth(cluster, ns)  # first: without KEDA it refuses before any write
        _delete_hpa(cluster, ns, name)
        _put_custom(cluster, ns, "scaledobjects", ko.scaled_object(ns, name, scaling, project))
    else:
        _delete_scaled_object(cluster, ns, name)
        _put_hpa(cluster, ns, fo.hpa_body(name, scaling))
    return scaling


def _put_hpa(cluster: Cluster, ns: str, body: dict) -> None:
    name = body["metadata"]["name"]
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
        return
    body["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
    call(
        f"update HPA {ns}/{name}",
        cluster.autoscaling.replace_namespaced_horizontal_pod_autoscaler,
        name,
        ns,
        body,
    )


def _put_custom(cluster: Cluster, ns: str, plural: str, body: dict) -> None:
    """Create or replace a KEDA object. Raises ``KedaNotInstalled`` without KEDA's CRD."""
    name = body["metadata"]["name"]
    try:
        current = get_or_none(f"read {plural} {ns}/{name}",
                              cluster.custom.get_namespaced_custom_object, *KEDA_V, ns, plural,
                              name)  # fmt: skip
        if current is None:
            call(f"create {plural} {ns}/{name}", cluster.custom.create_namespaced_custom_object,
                 *KEDA_V, ns, plural, body)  # fmt: skip
            return
        body["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
        call(f"update {plural} {ns}/{name}", cluster.custom.replace_namespaced_custom_object,
             *KEDA_V, ns, plural, name, body)  # fmt: skip
    except NotFound:  # the resource itself is unknown: KEDA is not installed
        raise KedaNotInstalled() from None


def _ensure_trigger_auth(cluster: Cluster, ns: str) -> None:
    """The namespace's TriggerAuthentication, created once and shared by every pool."""
    body = ko.trigger_authentication()
    name = body["metadata"]["name"]
    read = cluster.custom.get_namespaced_custom_object
    try:
        if get_or_none(f"read triggerauthentications {ns}/{name}", read, *KEDA_V, ns,
                       "triggerauthentications", name) is None:  # fmt: skip
            call(f"create triggerauthentications {ns}/{name}",
                 cluster.custom.create_namespaced_custom_object, *KEDA_V, ns,
                 "triggerauthentications", body)  # fmt: skip
    except NotFound:
        raise KedaNotInstalled() from None


def _delete_hpa(cluster: Cluster, ns: str, name: str) -> None:
    get_or_none(
        f"delete HPA {ns}/{name}",
        cluster.autoscaling.delete_namespaced_horizontal_pod_autoscaler,
        name,
        ns,
    )


def _delete_scaled_object(cluster: Cluster, ns: str, name: str) -> None:
    """Delete the pool's ScaledObject (KEDA then deletes its HPA); none, or no KEDA: fine."""
    get_or_none(f"delete scaledobjects {ns}/{name}",
                cluster.custom.delete_namespaced_custom_object, *KEDA_V, ns, "scaledobjects",
                name)  # fmt: skip


def clear_autoscaling(cluster: Cluster, ns: str, name: str) -> None:
    """Remove the pool's HPA or ScaledObject (its replicas stay where they are)."""
    get_pool(cluster, ns, name)
    _delete_hpa(cluster, ns, name)
    _delete_scaled_object(cluster, ns, name)


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
