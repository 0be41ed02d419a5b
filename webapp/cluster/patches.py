"""Pure builders of the patches that switch, roll back, scale and flip the vLLM Deployments.

JSON patches carry the resourceVersion that was read, so a concurrent change makes the
API server answer 409 instead of being overwritten. Blue/green slots (``<base>`` and
``<base>-green``) are named and labelled here too.
"""

from __future__ import annotations

import copy
import json

from webapp.cluster.model_spec import check_object_name

PREVIOUS_TEMPLATE_ANNOTATION = "llm-console/previous-template"


def in_place_patch(deployment: dict, new_template: dict) -> list[dict]:
    """JSON patch switching ``deployment`` to ``new_template`` in one request.

    Stores the current template in the ``llm-console/previous-template`` annotation (for
    rollback), forces the ``Recreate`` strategy (the only one that cannot deadlock when the
    pool cannot hold two pods) and carries the read resourceVersion so that a concurrent
    change makes the API server answer 409 instead of overwriting it.
    """
    meta = deployment["metadata"]
    annotations = dict(meta.get("annotations") or {})
    annotations[PREVIOUS_TEMPLATE_ANNOTATION] = json.dumps(
        deployment["spec"]["template"], sort_keys=True, separators=(",", ":")
    )
    return [
        {"op": "replace", "path": "/metadata/resourceVersion", "value": meta["resourceVersion"]},
        {"op": "add", "path": "/metadata/annotations", "value": annotations},
        {"op": "replace", "path": "/spec/template", "value": new_template},
        {"op": "add", "path": "/spec/strategy", "value": {"type": "Recreate"}},
        {
            "op": "add",
            "path": "/spec/replicas",
            "value": max(1, deployment["spec"].get("replicas") or 0),
        },
    ]


def previous_template(deployment: dict) -> dict | None:
    """The template saved before the last switch, or None."""
    raw = (deployment["metadata"].get("annotations") or {}).get(PREVIOUS_TEMPLATE_ANNOTATION)
    if not raw:
        return None
    try:
        tmpl = json.loads(raw)
    except ValueError:
        return None
    return tmpl if isinstance(tmpl, dict) and tmpl.get("spec") else None


def rollback_patch(deployment: dict, template: dict) -> list[dict]:
    """JSON patch putting ``template`` (the previous one) back, with a resourceVersion check."""
    return [
        {
            "op": "replace",
            "path": "/metadata/resourceVersion",
            "value": deployment["metadata"]["resourceVersion"],
        },
        {"op": "replace", "path": "/spec/template", "value": template},
    ]


def other_slot_name(base_name: str, active_name: str) -> str:
    """Blue/green alternates between ``<base>`` and ``<base>-green``."""
    green = f"{base_name}-green"
    check_object_name("deployment", green)
    return base_name if active_name == green else green


def slot_labels(
    active_selector: dict[str, str], active_name: str, target_name: str, base_name: str
) -> dict[str, str]:
    """Selector labels of the target slot: disjoint from the active one's (so the Service
    flips atomically) — the base Deployment keeps its own selector, green appends ``-green``."""
    if target_name == base_name:
        return {k: v.removesuffix("-green") for k, v in active_selector.items()}
    return {k: f"{v}-green"[:63] for k, v in active_selector.items()}


def idle_slot(active: dict, base_name: str) -> dict:
    """The other blue/green slot of Deployment ``active``, stopped (``replicas: 0``): its
    name (``other_slot_name``), selector and pod labels (``slot_labels``) and a copy of the
    active pod template. The manifests ship it (``k8s/base/vllm-green``) because the console
    may not create Deployments (RBAC cannot limit ``create`` by name); the console only
    patches it. Tests seed clusters with it the way ``kubectl apply -k`` does."""
    name = active["metadata"]["name"]
    target = other_slot_name(base_name, name)
    selector = slot_labels(active["spec"]["selector"]["matchLabels"], name, target, base_name)
    tmpl = copy.deepcopy(active["spec"]["template"])
    tmpl.setdefault("metadata", {})["labels"] = {
        **(tmpl["metadata"].get("labels") or {}),
        **selector,
    }
    spec = copy.deepcopy(active["spec"])
    spec.pop("replicas", None)
    spec.update(replicas=0, selector={"matchLabels": dict(selector)}, template=tmpl)
    meta = active["metadata"]
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": target,
            "namespace": meta.get("namespace"),
            "labels": {**(meta.get("labels") or {}), **selector},
        },
        "spec": spec,
    }


def slot_update_patch(deployment: dict, template: dict) -> list[dict]:
    """JSON patch reusing an idle slot Deployment: new template and one replica."""
    labels = {
        **(template.get("metadata", {}).get("labels") or {}),
        **deployment["spec"]["selector"]["matchLabels"],
    }
    tmpl = {**template, "metadata": {**template.get("metadata", {}), "labels": labels}}
    return [
        {
            "op": "replace",
            "path": "/metadata/resourceVersion",
            "value": deployment["metadata"]["resourceVersion"],
        },
        {"op": "replace", "path": "/spec/template", "value": tmpl},
        {"op": "add", "path": "/spec/strategy", "value": {"type": "Recreate"}},
        {"op": "add", "path": "/spec/replicas", "value": 1},
    ]


def selector_patch(service: dict, selector: dict[str, str]) -> list[dict]:
    """JSON patch replacing a Service's whole selector (one request, resourceVersion checked)."""
    return [
        {
            "op": "replace",
            "path": "/metadata/resourceVersion",
            "value": service["metadata"]["resourceVersion"],
        },
        {"op": "add", "path": "/spec/selector", "value": dict(selector)},
    ]


def scale_patch(replicas: int) -> dict:
    """Merge patch setting the replica count."""
    return {"spec": {"replicas": int(replicas)}}
