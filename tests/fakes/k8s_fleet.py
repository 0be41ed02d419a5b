"""The fake API server's model-pool side (issue 14): the Gateway API / Inference Extension
objects, autoscaling/v2, ``deployments/scale`` and the controllers that act on them.

``k8s_server.FakeCluster`` stores these objects like its others (CRUD, LIST, WATCH, PATCH);
this module adds what the real control plane does with them:

* ``deployments/NAME/scale`` (GET, PUT, PATCH): the ``autoscaling/v1`` ``Scale`` of a
  Deployment, writing through to ``spec.replicas``;
* the gateway controller: each ``HTTPRoute`` gets ``status.parents[]`` with ``Accepted`` (its
  parent Gateway exists) and ``ResolvedRefs`` (every backendRef names an existing
  ``InferencePool``; else False, reason ``BackendNotFound``), as GKE's gateway controller does;
  each ``InferencePool`` routed from a Gateway gets ``status.parents[]`` with ``Accepted`` and
  ``ResolvedRefs`` (False, reason ``InvalidExtensionRef``, without its picker's Service);
* the HPA controller: for each ``autoscaling/v2`` HPA on a Deployment it reads the metric value
  a test set (``FakeCluster.set_metric(ns, hpa, value)``, standing in for the custom-metrics
  adapter serving ``vllm:num_requests_waiting`` per pod), computes HPA's
  ``desired = ceil(current * value / target)`` (no change within HPA's 10 % tolerance),
  clamps it to ``[minReplicas, maxReplicas]``, scales the Deployment and writes the status
  (currentReplicas, desiredReplicas, currentMetrics, conditions ``AbleToScale`` and
  ``ScalingActive``). A Deployment at 0 replicas is not touched: ``ScalingActive`` False,
  reason ``ScalingDisabled``, as the real HPA does (scale to zero needs someone to wake it).
"""

from __future__ import annotations

import copy
import json
import math
import re
from datetime import UTC, datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tests.fakes.k8s_server import FakeCluster

GATEWAY_CONTROLLER = "networking.gke.io/gateway"
INFERENCE_GROUP = "inference.networking.k8s.io"
# HPA's default tolerance: no scaling while |value / target - 1| <= 0.1.
TOLERANCE = 0.1

# resource -> (group, version, namespaced, kind): merged into k8s_server.RESOURCES
FLEET_RESOURCES = {
    "configmaps": ("", "v1", True, "ConfigMap"),
    "gateways": ("gateway.networking.k8s.io", "v1", True, "Gateway"),
    "httproutes": ("gateway.networking.k8s.io", "v1", True, "HTTPRoute"),
    "inferencepools": (INFERENCE_GROUP, "v1", True, "InferencePool"),
    "horizontalpodautoscalers": ("autoscaling", "v2", True, "HorizontalPodAutoscaler"),
    "healthcheckpolicies": ("networking.gke.io", "v1", True, "HealthCheckPolicy"),
    "gcpbackendpolicies": ("networking.gke.io", "v1", True, "GCPBackendPolicy"),
}

_QUANTITY = re.compile(r"^([0-9.]+)(m|k|M|G)?$")
_SUFFIX = {None: 1.0, "m": 0.001, "k": 1e3, "M": 1e6, "G": 1e9}


def quantity(value) -> float:
    """A Kubernetes quantity ("5", "500m", 2) as a number."""
    m = _QUANTITY.match(str(value).strip())
    if not m:
        raise ValueError(f"not a quantity: {value!r}")
    return float(m.group(1)) * _SUFFIX[m.group(2)]


def _now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _format(value: float) -> str:
    milli = round(value * 1000)
    return str(milli // 1000) if milli % 1000 == 0 else f"{milli}m"


# ---------------------------------------------------------------- deployments/scale


def scale_of(dep: dict) -> dict:
    """The ``autoscaling/v1`` Scale of a Deployment, as the API server serves it."""
    meta = dep["metadata"]
    sel = dep["spec"].get("selector", {}).get("matchLabels") or {}
    return {
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": meta["name"],
            "namespace": meta["namespace"],
            "uid": meta["uid"],
            "resourceVersion": meta["resourceVersion"],
            "creationTimestamp": meta.get("creationTimestamp"),
        },
        "spec": {"replicas": dep["spec"].get("replicas", 0)},
        "status": {
            "replicas": (dep.get("status") or {}).get("replicas", 0),
            "selector": ",".join(f"{k}={v}" for k, v in sorted(sel.items())),
        },
    }


def handle_scale(fc: FakeCluster, verb: str, ns: str, name: str, body: bytes, ctype: str):
    """GET / PUT / PATCH on ``deployments/NAME/scale`` (called under the cluster lock)."""
    from tests.fakes.k8s_server import ApiError, json_patch, merge_patch, strategic_merge_patch

    key = fc._key("deployments", ns, name)
    dep = fc.objects["deployments"].get(key)
    if dep is None:
        raise ApiError(404, f'deployments.apps "{name}" not found')
    current = scale_of(dep)
    if verb == "get":
        return current
    payload = json.loads(body or b"null")
    if verb == "update":
        new = payload
    elif verb == "patch":
        ct = ctype.split(";")[0].strip()
        if ct == "application/json-patch+json":
            new = json_patch(current, payload)
        elif ct == "application/merge-patch+json":
            new = merge_patch(current, payload)
        elif ct == "application/strategic-merge-patch+json":
            new = strategic_merge_patch(current, payload)
        else:
            raise ApiError(415, f"unsupported patch content type {ct}")
    else:
        raise ApiError(405, f"verb {verb} not supported on deployments/scale")
    want_rv = (new.get("metadata") or {}).get("resourceVersion")
    if want_rv and want_rv != dep["metadata"]["resourceVersion"]:
        raise ApiError(409, f'Operation cannot be fulfilled on deployments.apps "{name}"')
    replicas = (new.get("spec") or {}).get("replicas")
    if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
        raise ApiError(422, f"Scale.spec.replicas: Invalid value: {replicas!r}")
    if replicas != dep["spec"].get("replicas"):
        updated = copy.deepcopy(dep)
        updated["spec"]["replicas"] = replicas
        dep = fc._update("deployments", key, updated)
    return scale_of(dep)


# ---------------------------------------------------------------- controllers


def reconcile(fc: FakeCluster) -> None:
    """One pass of the gateway and HPA controllers (called under the cluster lock)."""
    for key in list(fc.objects["httproutes"]):
        _route_status(fc, key)
    for key in list(fc.objects["inferencepools"]):
        _pool_status(fc, key)
    for key in list(fc.objects["horizontalpodautoscalers"]):
        _hpa(fc, key)


def _condition(typ: str, ok: bool, reason: str, message: str, old: dict | None) -> dict:
    status = "True" if ok else "False"
    same = old and old.get("status") == status and old.get("reason") == reason
    return {
        "type": typ,
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": old["lastTransitionTime"] if same else _now_iso(),
    }


def _set_status(fc: FakeCluster, resource: str, obj: dict, status: dict) -> None:
    if obj.get("status") != status:
        obj["status"] = status
        fc._bump(resource, "MODIFIED", obj)


def _route_status(fc: FakeCluster, key) -> None:
    route = fc.objects["httproutes"][key]
    ns = key[0]
    missing = [
        ref.get("name")
        for rule in route.get("spec", {}).get("rules") or []
        for ref in rule.get("backendRefs") or []
        if ref.get("kind") == "InferencePool"
        and (ns, ref.get("name")) not in fc.objects["inferencepools"]
    ]
    old = {
        (p.get("parentRef") or {}).get("name"): {c["type"]: c for c in p.get("conditions", [])}
        for p in (route.get("status") or {}).get("parents") or []
    }
    parents = []
    for ref in route.get("spec", {}).get("parentRefs") or []:
        before = old.get(ref.get("name"), {})
        exists = (ns, ref.get("name")) in fc.objects["gateways"]
        accepted = _condition(
            "Accepted",
            exists,
            "Accepted" if exists else "NoMatchingParent",
            "" if exists else f"Gateway {ref.get('name')!r} not found",
            before.get("Accepted"),
        )
        resolved = _condition(
            "ResolvedRefs",
            not missing,
            "BackendNotFound" if missing else "ResolvedRefs",
            f"InferencePool(s) not found: {', '.join(missing)}" if missing else "",
            before.get("ResolvedRefs"),
        )
        parents.append(
            {
                "parentRef": copy.deepcopy(ref),
                "controllerName": GATEWAY_CONTROLLER,
                "conditions": [accepted, resolved],
            }
        )
    _set_status(fc, "httproutes", route, {"parents": parents})


def _pool_status(fc: FakeCluster, key) -> None:
    """An InferencePool's ``status.parents``: one entry per Gateway whose routes send to it,
    ``Accepted`` and ``ResolvedRefs`` (False, reason ``InvalidExtensionRef``, while its
    endpoint picker's Service does not exist)."""
    pool = fc.objects["inferencepools"][key]
    ns, name = key
    gateways = sorted(
        {
            ref.get("name")
            for route in fc.objects["httproutes"].values()
            if route["metadata"].get("namespace") == ns
            and any(
                b.get("kind") == "InferencePool" and b.get("name") == name
                for rule in route.get("spec", {}).get("rules") or []
                for b in rule.get("backendRefs") or []
            )
            for ref in route.get("spec", {}).get("parentRefs") or []
            if (ns, ref.get("name")) in fc.objects["gateways"]
        }
    )
    picker = (pool.get("spec") or {}).get("endpointPickerRef", {}).get("name")
    found = (ns, picker) in fc.objects["services"]
    old = {
        (p.get("parentRef") or {}).get("name"): {c["type"]: c for c in p.get("conditions", [])}
        for p in (pool.get("status") or {}).get("parents") or []
    }
    parents = [
        {
            "parentRef": {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": gw},
            "conditions": [
                _condition("Accepted", True, "Accepted", "", old.get(gw, {}).get("Accepted")),
                _condition(
                    "ResolvedRefs",
                    found,
                    "ResolvedRefs" if found else "InvalidExtensionRef",
                    "" if found else f"Service {picker!r} of the endpoint picker not found",
                    old.get(gw, {}).get("ResolvedRefs"),
                ),
            ],
        }
        for gw in gateways
    ]
    _set_status(fc, "inferencepools", pool, {"parents": parents})


def _pods_metric(hpa: dict) -> tuple[str, float] | None:
    """(metric name, target average value) of the HPA's first Pods metric."""
    for metric in hpa.get("spec", {}).get("metrics") or []:
        if metric.get("type") == "Pods":
            pods = metric["pods"]
            return pods["metric"]["name"], quantity(pods["target"]["averageValue"])
    return None


def desired_replicas(current: int, value: float, target: float, lo: int, hi: int) -> int:
    """HPA's formula: ceil(current * value / target) outside the tolerance, clamped."""
    ratio = value / target if target else 0.0
    desired = current if abs(ratio - 1.0) <= TOLERANCE else math.ceil(current * ratio)
    return max(lo, min(hi, desired))


def _hpa(fc: FakeCluster, key) -> None:
    hpa = fc.objects["horizontalpodautoscalers"][key]
    ns, name = key
    spec = hpa.get("spec") or {}
    target_ref = spec.get("scaleTargetRef") or {}
    dep_key = (ns, target_ref.get("name"))
    dep = fc.objects["deployments"].get(dep_key)
    prev = {c["type"]: c for c in (hpa.get("status") or {}).get("conditions", [])}
    metric = _pods_metric(hpa)
    value = fc.metrics.get((ns, name))
    current = dep["spec"].get("replicas", 0) if dep else 0
    desired = current
    lo, hi = spec.get("minReplicas", 1), spec["maxReplicas"]
    if dep is None:
        able = ("False", "FailedGetScale", f"deployments/scale {target_ref.get('name')} missing")
        active = ("False", "FailedGetScale", "the target does not exist")
    elif current == 0:
        able = (
            "True",
            "SucceededGetScale",
            "the HPA controller was able to get the target's scale",
        )
        active = (
            "False",
            "ScalingDisabled",
            "scaling is disabled since the replica count of the target is zero",
        )  # noqa: E501
    elif metric is None or value is None:
        able = (
            "True",
            "SucceededGetScale",
            "the HPA controller was able to get the target's scale",
        )
        active = ("False", "FailedGetPodsMetric", "unable to get the pods metric")
    else:
        desired = desired_replicas(current, value, metric[1], lo, hi)
        able = ("True", "SucceededRescale" if desired != current else "ReadyForNewScale", "")
        active = (
            "True",
            "ValidMetricFound",
            f"the HPA was able to compute the replica count from pods metric {metric[0]}",
        )  # noqa: E501
    if dep is not None and desired != current:
        updated = copy.deepcopy(dep)
        updated["spec"]["replicas"] = desired
        fc._update("deployments", dep_key, updated)
    status: dict = {
        "currentReplicas": current,
        "desiredReplicas": desired,
        "conditions": [
            _condition("AbleToScale", able[0] == "True", able[1], able[2], prev.get("AbleToScale")),
            _condition("ScalingActive", active[0] == "True", active[1], active[2],
                       prev.get("ScalingActive")),
        ],
    }  # fmt: skip
    if metric is not None and value is not None and current:
        status["currentMetrics"] = [
            {
                "type": "Pods",
                "pods": {
                    "metric": {"name": metric[0]},
                    "current": {"averageValue": _format(value)},
                },
            }
        ]
    last = (hpa.get("status") or {}).get("lastScaleTime")
    if desired != current:
        last = _now_iso()
    if last:
        status["lastScaleTime"] = last
    _set_status(fc, "horizontalpodautoscalers", hpa, status)
