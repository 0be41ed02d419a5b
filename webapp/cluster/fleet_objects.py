"""Pure builders and readers of a model pool's objects (the I/O is ``webapp.cluster.fleet``).

A pool is built from the default pool's objects as they are in the cluster, exactly as
k8s/overlays/pools builds "vllm-mistral" from the base: a copy of the base vLLM Deployment
(``pools.deployment_patch``: its name, labels, replicas and model; the model cache as a per-pod
emptyDir, since the base's ReadWriteOnce disk cannot be shared), a copy of the base pool's
endpoint picker (its ConfigMap, Deployment and Service, renamed and pointed at the new pool;
it keeps the base picker's ServiceAccount, whose Roles are namespace-wide anyway, so the
console never writes RBAC), copies of the GKE health-check and backend policies retargeted,
the ``InferencePool`` (``pools.inference_pool``) and one ``HTTPRoute`` rule
(``pools.route_rule``). Nothing here talks to a cluster.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass

import jsonpatch

from webapp.cluster import pools
from webapp.cluster.errors import InvalidPool, ModelAlreadyServed, PoolInUse
from webapp.cluster.manifests import (
    ACCELERATOR_LABEL,
    GPU_RESOURCE,
    container_flags,
    template_hf_repo,
    template_model,
)
from webapp.cluster.patches import PREVIOUS_TEMPLATE_ANNOTATION
from webapp.cluster.pool_overrides import FLAGS, PoolOverrides, check_image
from webapp.cluster.pools import Backend, PoolSpec

ROUTE_NAME = "llm-models"
GATEWAY_GROUP = "gateway.networking.k8s.io"
GKE_GROUP = "networking.gke.io"
# GKE managed Prometheus through the Custom Metrics Stackdriver Adapter names a Prometheus
# gauge "prometheus.googleapis.com|<metric>|gauge" (GKE's vLLM autoscaling guide).
WAITING_METRIC = "prometheus.googleapis.com|vllm:num_requests_waiting|gauge"
MODEL_CACHE_VOLUME = "model-cache"
MODEL_CACHE_SIZE = "60Gi"
# Flags that belong to the base's model, not to the new pool's: dropped from the copy.
MODEL_SPECIFIC_FLAGS = ("--revision", "--quantization", "--trust-remote-code")
_SERVER_FIELDS = ("uid", "resourceVersion", "creationTimestamp", "generation", "managedFields",
                  "ownerReferences", "selfLink")  # fmt: skip
_DROPPED_ANNOTATIONS = (
    PREVIOUS_TEMPLATE_ANNOTATION,
    "kubectl.kubernetes.io/last-applied-configuration",
    "deployment.kubernetes.io/revision",
)


@dataclass(frozen=True)
class Autoscaling:
    """A pool's autoscaling: replicas between ``min_replicas`` and ``max_replicas``, aiming at
    ``target_waiting`` requests per replica; ``scale_to_zero`` (min 0) is a KEDA ScaledObject
    (``keda_objects``), else an HPA (GKE's HPA cannot go to 0)."""

    min_replicas: int
    max_replicas: int
    target_waiting: float
    scale_to_zero: bool = False


@dataclass(frozen=True)
class PoolState:
    """One model pool as the admin page lists it.

    ``backends``: the pools behind this pool's model name with their shares (a canary shows
    two); ``gpu_type`` is the accelerator label value (``nvidia-l4``); ``deployed`` False when
    the InferencePool exists without its Deployment (a pool half removed)."""

    name: str
    model: str | None
    gpu_type: str | None
    gpus_per_replica: int
    replicas: int
    ready: int
    autoscaling: Autoscaling | None
    backends: tuple[Backend, ...]
    deployed: bool = True
    hf_repo: str | None = None  # what it loads (``--model``): a canary's version shows here
    image: str | None = None  # the vLLM image (a canary may try another vLLM version)
    flags: tuple[tuple[str, str], ...] = ()  # the pool_overrides.FLAGS its vLLM is given

    @property
    def asleep(self) -> bool:
        """Scaled to zero: the chat's first request for the model wakes it."""
        return self.deployed and self.replicas == 0


# ---------------------------------------------------------------- copies of the base


def _clean_meta(obj: dict, name: str) -> dict:
    out = copy.deepcopy(obj)
    out.pop("status", None)
    meta = out.setdefault("metadata", {})
    for key in _SERVER_FIELDS:
        meta.pop(key, None)
    annotations = {
        k: v for k, v in (meta.get("annotations") or {}).items() if k not in _DROPPED_ANNOTATIONS
    }
    if annotations:
        meta["annotations"] = annotations
    else:
        meta.pop("annotations", None)
    meta["name"] = name
    return out


def set_flags(args: Sequence[str], values: dict[str, str]) -> list[str]:
    """``args`` with each flag of ``values`` set (``--f=v`` form, replacing ``--f=x`` and
    ``--f x`` wherever they are) and the base model's own flags dropped."""
    out: list[str] = []
    skip = False
    for arg in args:
        if skip:
            skip = False
            continue
        flag = arg.split("=", 1)[0]
        if flag in values or flag in MODEL_SPECIFIC_FLAGS:
            skip = "=" not in arg and flag != "--trust-remote-code"
            continue
        out.append(arg)
    return [f"{flag}={value}" for flag, value in values.items()] + out


def pool_deployment(
    base: dict, spec: PoolSpec, hf_repo: str, max_model_len: int,
    overrides: PoolOverrides | None = None,
) -> dict:  # fmt: skip
    """The new pool's vLLM Deployment: the base copied, ``pools.deployment_patch`` applied,
    the model flags set by name (the base's argument order may differ after a switch), the
    ``overrides`` (validated by the caller; the image checked against the base's here), and the
    model cache a per-pod emptyDir. Raises ``InvalidPool`` if the base lacks what is patched."""
    overrides = overrides or PoolOverrides()
    dep = _clean_meta(base, spec.name)
    dep.setdefault("spec", {}).setdefault("template", {}).setdefault("metadata", {}).setdefault(
        "annotations", {}
    ).setdefault("llm-console/model", spec.model)
    try:
        dep = jsonpatch.apply_patch(dep, pools.deployment_patch(spec, hf_repo, max_model_len))
    except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as exc:
        raise InvalidPool(
            "base",
            f"The base Deployment {base['metadata'].get('name')!r} is not shaped like the "
            f"manifests' vLLM Deployment ({exc}); re-apply the manifests.",
        ) from None
    pod = dep["spec"]["template"]["spec"]
    vllm = pod["containers"][0]
    vllm["args"] = set_flags(
        [str(a) for a in vllm.get("args") or []],
        {"--model": hf_repo, "--served-model-name": spec.model,
         "--max-model-len": str(max_model_len), **overrides.flags()},
    )  # fmt: skip
    if overrides.image is not None:
        vllm["image"] = check_image(overrides.image, vllm.get("image"))
    pod["volumes"] = [
        {"name": v["name"], "emptyDir": {"sizeLimit": MODEL_CACHE_SIZE}}
        if v.get("name") == MODEL_CACHE_VOLUME and "persistentVolumeClaim" in v
        else v
        for v in pod.get("volumes") or []
    ]
    return dep


def picker_objects(config_map: dict, deployment: dict, service: dict, pool: str) -> list[dict]:
    """The base pool's endpoint picker (ConfigMap, Deployment, Service) copied for ``pool``:
    renamed ``<pool>-epp`` (``pools.epp_name``), its own pod label, ``--pool-name pool``."""
    name = pools.epp_name(pool)
    cm = _clean_meta(config_map, name)
    dep = _clean_meta(deployment, name)
    dep["metadata"].setdefault("labels", {})["app.kubernetes.io/name"] = name
    dep["spec"]["selector"] = {"matchLabels": {"inferencepool": name}}
    tmpl = dep["spec"]["template"]
    tmpl.setdefault("metadata", {}).setdefault("labels", {})["inferencepool"] = name
    container = tmpl["spec"]["containers"][0]
    args = [str(a) for a in container.get("args") or []]
    if "--pool-name" in args:
        args[args.index("--pool-name") + 1] = pool
    else:
        args = ["--pool-name", pool, *args]
    container["args"] = args
    for volume in tmpl["spec"].get("volumes") or []:
        if "configMap" in volume:
            volume["configMap"]["name"] = name
    svc = _clean_meta(service, name)
    spec = svc.get("spec") or {}
    for key in ("clusterIP", "clusterIPs"):
        spec.pop(key, None)
    spec["selector"] = {"inferencepool": name}
    return [cm, dep, svc]


def pool_policy(base_policy: dict, pool: str) -> dict:
    """A GKE policy of the base pool (HealthCheckPolicy, GCPBackendPolicy) for ``pool``."""
    policy = _clean_meta(base_policy, pool)
    policy["spec"]["targetRef"] = {
        "group": pools.INFERENCE_GROUP,
        "kind": "InferencePool",
        "name": pool,
    }
    return policy


# ---------------------------------------------------------------- HPA


def hpa_body(pool: str, scaling: Autoscaling) -> dict:
    """The pool's ``autoscaling/v2`` HPA on the per-replica queue depth. GKE's HPA cannot go
    below 1 (scale to zero is an alpha gate; min 0 is KEDA's, ``keda_objects``)."""
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": pool},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": pool},
            "minReplicas": max(1, scaling.min_replicas),
            "maxReplicas": scaling.max_replicas,
            "metrics": [
                {
                    "type": "Pods",
                    "pods": {
                        "metric": {"name": WAITING_METRIC},
                        "target": {
                            "type": "AverageValue",
                            "averageValue": f"{scaling.target_waiting:g}",
                        },
                    },
                }
            ],
        },
    }


def read_autoscaling(hpa: dict) -> Autoscaling:
    """What an HPA written by ``hpa_body`` says."""
    spec = hpa.get("spec") or {}
    target = 0.0
    for metric in spec.get("metrics") or []:
        if metric.get("type") == "Pods":
            raw = str(metric["pods"]["target"].get("averageValue") or "0")
            target = float(raw[:-1]) / 1000 if raw.endswith("m") else float(raw)
    return Autoscaling(
        min_replicas=spec.get("minReplicas", 1),
        max_replicas=spec.get("maxReplicas", 1),
        target_waiting=target,
    )


# ---------------------------------------------------------------- the HTTPRoute


def rule_model(rule: dict) -> str | None:
    """The model name a rule matches on (its ``X-Gateway-Model-Name`` header), else None."""
    for match in rule.get("matches") or []:
        for header in match.get("headers") or []:
            if header.get("name") == pools.MODEL_HEADER:
                return header.get("value")
    return None


def rule_backends(rule: dict) -> tuple[Backend, ...]:
    """The InferencePools a rule sends to, with their weights (1 when unset, as Gateway API)."""
    return tuple(
        Backend(ref["name"], ref.get("weight", 1))
        for ref in rule.get("backendRefs") or []
        if ref.get("kind") == "InferencePool"
    )


def routed_models(route: dict) -> dict[str, tuple[Backend, ...]]:
    """Model name -> its backends, in the route's order."""
    return {
        model: rule_backends(rule)
        for rule in (route.get("spec") or {}).get("rules") or []
        if (model := rule_model(rule)) is not None
    }


def with_split(route: dict, model: str, backends: Sequence[Backend]) -> dict:
    """The route with ``model``'s rule sending to ``backends`` (appended if it had none)."""
    new = copy.deepcopy(route)
    rules = new.setdefault("spec", {}).setdefault("rules", [])
    built = pools.route_rule(model, backends)
    for rule in rules:
        if rule_model(rule) == model:
            rule["backendRefs"] = built["backendRefs"]
            return new
    rules.append(built)
    return new


def without_model(route: dict, model: str) -> dict:
    """The route without ``model``'s rule."""
    new = copy.deepcopy(route)
    new["spec"]["rules"] = [r for r in new["spec"].get("rules") or [] if rule_model(r) != model]
    return new


def renamed_model(route: dict, pool: str, old: str, new: str) -> dict:
    """The route with pool ``pool``'s rule for ``old`` matching ``new`` instead (a model switch
    of that pool). Raises ``ModelAlreadyServed`` when ``new`` has a rule already, and
    ``PoolInUse`` when ``old``'s traffic is shared (a canary under way) or not ``pool``'s."""
    routed = routed_models(route)
    if new in routed:
        raise ModelAlreadyServed(new, tuple(b.pool for b in routed[new]))
    if [b.pool for b in routed.get(old, ())] != [pool]:
        raise PoolInUse(pool, f"the traffic of {old!r} is not this pool's alone; finish or roll "
                        "back the canary first.")  # fmt: skip
    new_route = copy.deepcopy(route)
    for rule in new_route["spec"]["rules"]:
        if rule_model(rule) == old:
            for match in rule.get("matches") or []:
                for header in match.get("headers") or []:
                    if header.get("name") == pools.MODEL_HEADER:
                        header["value"] = new
    return new_route


def without_pool(route: dict, pool: str) -> dict:
    """The route without the rule of the model only ``pool`` serves. Raises ``PoolInUse``
    when ``pool`` shares a model's traffic with another pool (a canary under way) or takes
    the requests that name no model (the default pool): removing it would break traffic."""
    for rule in (route.get("spec") or {}).get("rules") or []:
        names = [b.pool for b in rule_backends(rule)]
        model = rule_model(rule)
        if pool in names and model is None:
            raise PoolInUse(
                pool,
                "it is the default pool: requests that name no model (the model list, health "
                "checks) go to it.",
            )
        if pool in names and len(names) > 1:
            others = ", ".join(n for n in names if n != pool)
            raise PoolInUse(
                pool,
                f"it shares the traffic of {model!r} with {others}; finish or roll back that "
                "canary first.",
            )
    for model, backends in routed_models(route).items():
        if [b.pool for b in backends] == [pool]:
            route = without_model(route, model)
    return route


# ---------------------------------------------------------------- reading a pool


def pool_state(
    name: str,
    deployment: dict | None,
    hpa: dict | None,
    route: dict | None,
    scaling: Autoscaling | None = None,
) -> PoolState:
    """One pool from its Deployment, its HPA and the route (each possibly missing);
    ``scaling`` read from its KEDA ScaledObject, when it has one, wins over the HPA."""
    models = routed_models(route or {})
    if deployment is None:
        return PoolState(name, None, None, 0, 0, 0, None, (), deployed=False)
    template = deployment["spec"].get("template") or {}
    model = template_model(template)
    pod = template.get("spec") or {}
    gpus, vllm = 0, (pod.get("containers") or [{}])[0]
    for c in pod.get("containers") or []:
        res = c.get("resources") or {}
        gpus += int((res.get("limits") or {}).get(GPU_RESOURCE) or 0)
    return PoolState(
        name=name,
        model=model,
        gpu_type=(pod.get("nodeSelector") or {}).get(ACCELERATOR_LABEL),
        gpus_per_replica=gpus,
        replicas=deployment["spec"].get("replicas", 0),
        ready=(deployment.get("status") or {}).get("readyReplicas", 0),
        autoscaling=scaling or (read_autoscaling(hpa) if hpa else None),
        backends=models.get(model or "", ()),
        hf_repo=template_hf_repo(template),
        image=vllm.get("image"),
        flags=tuple(container_flags(vllm, FLAGS).items()),
    )
