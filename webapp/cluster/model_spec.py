"""What to serve: the validated ``ModelSpec`` and vLLM's argument list built from it.

Pure: every field is checked before it reaches a manifest (``InvalidModelSpec`` names
the field), and vLLM arguments are an exec-form list, never a shell string, so a model
name can never inject a command. Object names are checked here too (RFC 1123).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

from webapp.cluster.errors import InvalidModelSpec

VLLM_PORT = 8000
# Values vLLM (the manifests.DEFAULT_IMAGE release) accepts for --dtype and --quantization: a test
# parses them with that release's own argument parser (0.32 knows no marlin, bitsandbytes
# or gguf --quantization method).
DTYPES = frozenset({"auto", "half", "float16", "bfloat16", "float", "float32"})
QUANTIZATIONS = frozenset({"awq", "awq_marlin", "gptq", "gptq_marlin", "fp8", "compressed-tensors"})
#: vLLM's ``--stream-interval``: tokens per streamed (SSE) chunk. bench/chunk_cost.py: 4 cuts
#: the chat app's CPU per token 2-3x against 1 while the page still redraws about 8 times a
#: second at 100 tokens/s; the first token is always sent alone.
DEFAULT_STREAM_INTERVAL = 4
STREAM_INTERVALS = range(1, 65)
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
        "--stream-interval",
        "--trust-remote-code",
        "--port",
        "--host",
        "--api-key",
    }
)

_RFC1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
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
    for ``tensor_parallel_size`` GPUs. ``stream_interval``: tokens per streamed chunk
    (``DEFAULT_STREAM_INTERVAL``).
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
    stream_interval: int = DEFAULT_STREAM_INTERVAL


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


def _need(ok: bool, fld: str, reason: str) -> None:
    if not ok:
        raise InvalidModelSpec(fld, reason)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _check_source(spec: ModelSpec) -> None:
    """What is loaded: served name, hub repository, revision, context length."""
    _need(
        isinstance(spec.name, str) and bool(_SERVED_NAME.match(spec.name)),
        "name",
        "must be 1-128 letters, digits or . _ / : - and start with a letter or digit",
    )
    _need(
        isinstance(spec.hf_repo, str) and bool(_HF_REPO.match(spec.hf_repo)),
        "hf_repo",
        "must look like 'organisation/model' (letters, digits, . _ -)",
    )
    _need(".." not in spec.hf_repo, "hf_repo", "must not contain '..'")
    _need(
        isinstance(spec.revision, str) and bool(_REVISION.match(spec.revision)),
        "revision",
        "must be a branch, tag or commit (letters, digits, . _ / -)",
    )
    _need(".." not in spec.revision, "revision", "must not contain '..'")
    _need(
        _is_int(spec.max_model_len) and 16 <= spec.max_model_len <= 10_485_760,
        "max_model_len",
        "must be a whole number of tokens between 16 and 10485760",
    )


def _check_hardware(spec: ModelSpec) -> None:
    """How it runs: GPUs, memory fraction, dtype, quantization, remote code, chunking."""
    tp = spec.tensor_parallel_size
    _need(_is_int(tp) and tp in (1, 2, 4, 8), "tensor_parallel_size", "must be 1, 2, 4 or 8")
    _need(
        isinstance(spec.gpu_type, str) and is_rfc1123_label(spec.gpu_type),
        "gpu_type",
        "must be a GKE accelerator label value such as 'nvidia-l4'",
    )
    util = spec.gpu_memory_utilization
    _need(
        isinstance(util, int | float)
        and not isinstance(util, bool)
        and math.isfinite(util)
        and 0.1 <= util <= 0.99,
        "gpu_memory_utilization",
        "must be a fraction between 0.10 and 0.99",
    )
    _need(spec.dtype in DTYPES, "dtype", f"must be one of {', '.join(sorted(DTYPES))}")
    _need(
        spec.quantization is None or spec.quantization in QUANTIZATIONS,
        "quantization",
        f"must be empty or one of {', '.join(sorted(QUANTIZATIONS))}",
    )
    _need(isinstance(spec.trust_remote_code, bool), "trust_remote_code", "must be true or false")
    _need(
        _is_int(spec.stream_interval) and spec.stream_interval in STREAM_INTERVALS,
        "stream_interval",
        f"must be a whole number of tokens per chunk between {STREAM_INTERVALS[0]} and "
        f"{STREAM_INTERVALS[-1]}",
    )


def _check_extras(spec: ModelSpec) -> None:
    """Free-form additions: extra vLLM flags (never a managed one) and the image."""
    _need(
        isinstance(spec.extra_args, tuple | list) and len(spec.extra_args) <= 32,
        "extra_args",
        "must be a list of at most 32 arguments",
    )
    for arg in spec.extra_args:
        _need(
            isinstance(arg, str) and bool(_EXTRA_ARG.match(arg)),
            "extra_args",
            f"{arg!r} must look like --flag or --flag=value without spaces",
        )
        _need(
            arg.split("=", 1)[0] not in MANAGED_FLAGS,
            "extra_args",
            f"{arg.split('=', 1)[0]} is set by the console; use the matching field instead",
        )
    _need(
        spec.image is None or (isinstance(spec.image, str) and bool(_IMAGE.match(spec.image))),
        "image",
        "must be a container image reference without spaces",
    )


def validate_spec(spec: ModelSpec) -> ModelSpec:
    """Check every field of ``spec``; return it unchanged or raise ``InvalidModelSpec``."""
    _check_source(spec)
    _check_hardware(spec)
    _check_extras(spec)
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
        f"--stream-interval={spec.stream_interval}",
    ]
    if spec.quantization:
        args.append(f"--quantization={spec.quantization}")
    if spec.trust_remote_code:
        args.append("--trust-remote-code")
    args += ["--host=0.0.0.0", f"--port={VLLM_PORT}"]  # noqa: S104 - container listens on pod IP
    return args + list(spec.extra_args)
