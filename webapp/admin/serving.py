"""What is served right now, in one sentence for the top of the admin status.

Pure: it takes the pods read from the cluster (their vLLM arguments name the model, see
``cluster.manifests.container_model``) and, when the chat endpoint answered, the ids its
``/v1/models`` lists. The pods say what runs where; ``/v1/models`` says what the chat
actually reaches — when the two disagree (``LLM_URL`` points at another server, or a
Service selects other pods) the sentence says so instead of picking one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from webapp.admin.sizing import GPUS
from webapp.cluster.inventory import PodInfo


@dataclass(frozen=True)
class Serving:
    """The headline: ``level`` is ok | warning | idle (how the page colours it)."""

    level: str
    text: str


def human_duration(seconds: float) -> str:
    """``40 s``, ``12 min``, ``3 h``, ``2 d``: the largest whole unit."""
    s = max(0, int(seconds))
    for unit, size in (("d", 86_400), ("h", 3_600), ("min", 60)):
        if s >= 2 * size or (unit == "min" and s >= size):
            return f"{s // size} {unit}"
    return f"{s} s"


def gpu_name(accelerator: str) -> str:
    """``L4`` for ``nvidia-l4``: the short name people use (the label if unknown)."""
    gpu = GPUS.get(accelerator)
    if gpu is None:
        return accelerator or "GPU"
    full = gpu.display_name.removeprefix("NVIDIA ")  # "A100 80 GB"
    short = full.rsplit(" ", 2)[0]  # "A100"
    same = [g for g in GPUS.values() if g.display_name.removeprefix("NVIDIA ").startswith(short)]
    return short if len(same) == 1 else full


def _hardware(pod: PodInfo) -> str:
    if not pod.gpus:
        return "CPU"
    return f"{pod.gpus} × {gpu_name(pod.accelerator)}"


def _model(pod: PodInfo) -> str:
    repo = f" ({pod.hf_repo})" if pod.hf_repo and pod.hf_repo != pod.model else ""
    return f"{pod.model}{repo}"


def _serving_pods(ready: Sequence[PodInfo]) -> str:
    """``llama-2-7b (meta-llama/…) on 1 × L4, since 3 h`` — per distinct model."""
    parts = []
    for model in dict.fromkeys(p.model for p in ready):
        pods = [p for p in ready if p.model == model]
        oldest = max(p.ready_for_s or 0.0 for p in pods)
        replicas = f"{len(pods)} replicas of " if len(pods) > 1 else ""
        parts.append(
            f"{_model(pods[0])} on {replicas}{_hardware(pods[0])}, since {human_duration(oldest)}"
        )
    return "; ".join(parts)


def _starting(pods: Sequence[PodInfo]) -> str:
    names = ", ".join(dict.fromkeys(p.model for p in pods))
    why = next((f" ({p.reason})" for p in pods if p.reason), "")
    return f"{names} is starting{why}"


def serving(
    pods: Sequence[PodInfo] | None, listed: Sequence[str] | None, *, namespace: str
) -> Serving:
    """The served model(s) from the vLLM pods of ``namespace`` (None: the cluster could not
    be read) and the ids of ``/v1/models`` at the chat endpoint (None: no answer)."""
    vllm = [p for p in pods or () if p.model and p.phase not in ("Succeeded", "Failed")]
    ready = [p for p in vllm if p.ready]
    if ready:
        text = "Serving " + _serving_pods(ready)
        if listed is not None and not set(listed) & {p.model for p in ready}:
            shown = ", ".join(listed) or "no model"
            return Serving("warning", f"{text}. But the chat endpoint lists {shown}.")
        if listed is None:
            return Serving("warning", f"{text}. The chat endpoint does not answer right now.")
        return Serving("ok", text + ".")
    starting = f"Not serving yet: {_starting(vllm)}" if vllm else ""
    if listed:
        where = "no vLLM pod is ready in" if vllm else "no vLLM pod runs in"
        text = f"The chat endpoint serves {', '.join(listed)} ({where} namespace {namespace})."
        return Serving("warning" if starting else "ok", f"{starting}. {text}" if vllm else text)
    if vllm:
        return Serving("warning", starting + ".")
    if pods is None:
        return Serving("idle", "No model is known to be served: the cluster cannot be read.")
    return Serving("idle", f"No model is served: no vLLM pod runs in namespace {namespace}.")
