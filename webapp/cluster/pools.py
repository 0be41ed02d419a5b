"""Model pools behind GKE Inference Gateway (issue 14): validation and the objects of a pool.

A served model is a *pool*: a vLLM Deployment with N replicas, its ``InferencePool``
(``inference.networking.k8s.io/v1``) and a rule of the ``HTTPRoute`` that sends the model
name's requests (header ``X-Gateway-Model-Name``, set by the body-based router from the OpenAI
body's ``model``) to it. A canary is a second pool in the same rule with backend weights.

Everything here is pure (no I/O): bad input raises ``InvalidPool`` with a plain message before
anything is written. The objects match ``k8s/components/inference-gateway`` and
``k8s/overlays/pools`` (tests/delivery/test_inference_gateway.py renders and compares them).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

from webapp.cluster.errors import InvalidPool
from webapp.cluster.model_spec import VLLM_PORT, is_rfc1123_label

INFERENCE_GROUP = "inference.networking.k8s.io"
INFERENCE_POOL_API = f"{INFERENCE_GROUP}/v1"
MODEL_HEADER = "X-Gateway-Model-Name"
GATEWAY_NAME = "inference-gateway"
EPP_PORT = 9002
# Enough for one region's GPU quota; a typo (1000) is refused rather than left Pending.
MAX_REPLICAS = 64
TOTAL_WEIGHT = 100


@dataclass(frozen=True)
class PoolSpec:
    """One model pool: its name (Deployment and InferencePool), the catalog model it serves
    (also the served model name clients send), and its replicas (with the autoscaling range)."""

    name: str
    model: str
    replicas: int = 1
    min_replicas: int = 1
    max_replicas: int = 1


@dataclass(frozen=True)
class Backend:
    """One pool behind a model name and the share of that name's requests it takes (0-100)."""

    pool: str
    weight: int = TOTAL_WEIGHT


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_pool_name(name: object, field: str = "name") -> str:
    """Return ``name`` or raise: Kubernetes names a pool's objects after it (RFC 1123 label);
    the endpoint picker's name adds ``-epp``, so 59 characters at most."""
    if not isinstance(name, str) or not is_rfc1123_label(name) or len(name) > 59:
        raise InvalidPool(
            field,
            f"The pool name {name!r} is not allowed: use at most 59 lower-case letters, digits "
            "or '-', starting and ending with a letter or digit (for example 'mistral-7b').",
        )
    return name


def validate_pool(spec: PoolSpec, catalog_ids: Collection[str]) -> PoolSpec:
    """Return ``spec`` if it may be deployed, else raise ``InvalidPool`` naming the field.

    ``catalog_ids``: the ids of the model catalog (``webapp.admin.catalog``), the only models an
    admin may serve."""
    check_pool_name(spec.name)
    if spec.model not in catalog_ids:
        raise InvalidPool(
            "model",
            f"The model {spec.model!r} is not in the model catalog; pick one of: "
            + ", ".join(sorted(catalog_ids)),
        )
    for field in ("replicas", "min_replicas", "max_replicas"):
        value = getattr(spec, field)
        if not _is_count(value) or not 0 <= value <= MAX_REPLICAS:
            raise InvalidPool(
                field, f"{field.replace('_', ' ')} must be a whole number from 0 to {MAX_REPLICAS}."
            )
    if spec.min_replicas > spec.max_replicas:
        raise InvalidPool(
            "min_replicas",
            f"The minimum ({spec.min_replicas}) is above the maximum ({spec.max_replicas}) "
            "replicas: lower the minimum or raise the maximum.",
        )
    if not spec.min_replicas <= spec.replicas <= spec.max_replicas:
        raise InvalidPool(
            "replicas",
            f"{spec.replicas} replicas is outside the autoscaling range "
            f"{spec.min_replicas}-{spec.max_replicas}.",
        )
    return spec


def validate_split(model: str, backends: Sequence[Backend]) -> tuple[Backend, ...]:
    """Return the backends of one model name if the split is valid: at least one pool, each
    named once with a weight 0-100, the weights summing to 100. Else raise ``InvalidPool``."""
    if not backends:
        raise InvalidPool("backends", f"The model {model!r} needs at least one pool to serve it.")
    names = [check_pool_name(b.pool, "backends") for b in backends]
    if len(set(names)) != len(names):
        raise InvalidPool("backends", f"A pool is named twice in the split of {model!r}.")
    for b in backends:
        if not _is_count(b.weight) or not 0 <= b.weight <= TOTAL_WEIGHT:
            raise InvalidPool("weights", f"The share of pool {b.pool!r} must be 0 to 100 (%).")
    total = sum(b.weight for b in backends)
    if total != TOTAL_WEIGHT:
        raise InvalidPool(
            "weights",
            f"The traffic shares of {model!r} add up to {total}%, not 100%: "
            + ", ".join(f"{b.pool} {b.weight}%" for b in backends),
        )
    return tuple(backends)


def pool_labels(name: str) -> dict[str, str]:
    """The pod labels that select a pool's vLLM replicas (the base Deployment "vllm" has
    these too, so the default pool is the existing Deployment)."""
    return {"app.kubernetes.io/name": name, "app.kubernetes.io/instance": name}


def epp_name(pool: str) -> str:
    """The pool's endpoint picker (Deployment and Service), named as upstream's chart does."""
    return f"{pool}-epp"


def inference_pool(name: str) -> dict:
    """The ``InferencePool`` of pool ``name``: vLLM's port, the pool's pods, its picker."""
    check_pool_name(name)
    return {
        "apiVersion": INFERENCE_POOL_API,
        "kind": "InferencePool",
        "metadata": {"name": name},
        "spec": {
            "targetPorts": [{"number": VLLM_PORT}],
            "appProtocol": "http",
            "selector": {"matchLabels": pool_labels(name)},
            "endpointPickerRef": {
                "name": epp_name(name),
                "port": {"number": EPP_PORT},
                "failureMode": "FailOpen",
            },
        },
    }


def route_rule(model: str, backends: Sequence[Backend]) -> dict:
    """The ``HTTPRoute`` rule that sends model name ``model`` to its pool(s) by weight."""
    validate_split(model, backends)
    return {
        "matches": [
            {
                "path": {"type": "PathPrefix", "value": "/"},
                "headers": [{"type": "Exact", "name": MODEL_HEADER, "value": model}],
            }
        ],
        "backendRefs": [
            {"group": INFERENCE_GROUP, "kind": "InferencePool", "name": b.pool, "weight": b.weight}
            for b in backends
        ],
    }


def deployment_patch(spec: PoolSpec, hf_repo: str, max_model_len: int) -> list[dict]:
    """JSON patch (RFC 6902) that turns a copy of the base vLLM Deployment (kustomize
    ``nameSuffix``) into pool ``spec``: its replicas, its own selector and pod labels (disjoint
    from every other pool's), and the model it serves."""
    labels = pool_labels(spec.name)
    ops: list[dict] = [{"op": "replace", "path": "/spec/replicas", "value": spec.replicas}]
    for where in (
        "/metadata/labels",
        "/spec/selector/matchLabels",
        "/spec/template/metadata/labels",
    ):
        ops += [
            {"op": "replace", "path": f"{where}/{key.replace('/', '~1')}", "value": value}
            for key, value in labels.items()
        ]
    ops += [
        {"op": "replace", "path": "/spec/template/spec/containers/0/args/0",
         "value": f"--model={hf_repo}"},
        {"op": "replace", "path": "/spec/template/spec/containers/0/args/1",
         "value": f"--served-model-name={spec.model}"},
        {"op": "replace", "path": "/spec/template/spec/containers/0/args/2",
         "value": f"--max-model-len={max_model_len}"},
        {"op": "replace", "path": "/spec/template/metadata/annotations/llm-console~1model",
         "value": spec.model},
    ]  # fmt: skip
    return ops
