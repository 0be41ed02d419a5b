"""Where a vLLM pod can run: can the GPU pool ever schedule it, and which switch
strategies fit (pure decisions).

Nothing here calls an API: the callers pass what they read (GPU nodes and pods from
Kubernetes, node pools from GKE) and get plain-language answers back. The point of
``check_placement`` is to refuse, before anything changes, a model the pool can never
run: in place, the running model would be stopped for a pod that stays Pending.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from webapp.cluster.inventory import TERMINAL_PHASES, GpuNode, PodInfo
from webapp.cluster.node_pools import NodePoolInfo

Strategy = Literal["in_place", "blue_green"]

#: Short GPU names and a GKE machine type with N of them per node (for "what to change").
_GPU_SHAPES: dict[str, tuple[str, dict[int, str]]] = {
    "nvidia-l4": ("L4", {1: "g2-standard-8", 2: "g2-standard-24", 4: "g2-standard-48",
                         8: "g2-standard-96"}),
    "nvidia-tesla-t4": ("T4", {n: f"an N1 machine with accelerator count {n}" for n in (1, 2, 4)}),
    "nvidia-tesla-a100": ("A100 40GB", {1: "a2-highgpu-1g", 2: "a2-highgpu-2g",
                                        4: "a2-highgpu-4g", 8: "a2-highgpu-8g",
                                        16: "a2-megagpu-16g"}),
    "nvidia-a100-80gb": ("A100 80GB", {n: f"a2-ultragpu-{n}g" for n in (1, 2, 4, 8)}),
    "nvidia-h100-80gb": ("H100 80GB", {n: f"a3-highgpu-{n}g" for n in (1, 2, 4, 8)}),
}  # fmt: skip
_PARTIAL = (
    " (Partial check: without GKE's node pools only the running nodes were looked at; "
    "pools scaled to zero and autoscaling limits are not seen.)"
)


@dataclass(frozen=True)
class Placement:
    """Can the pool ever schedule the pod? ``reason``: why not and what to change; when
    allowed, what could not be checked (``partial``: decided without GKE's node pools)."""

    ok: bool
    reason: str = ""
    partial: bool = False


def gpu_name(accelerator: str) -> str:
    """``L4`` for ``nvidia-l4``; an unknown accelerator label as it is."""
    return _GPU_SHAPES.get(accelerator, (accelerator, {}))[0]


def freed_by_in_place(pods: Iterable[PodInfo]) -> dict[str, int]:
    """GPUs per node that an in-place switch frees: those of the running vLLM pods (the
    console's pods carry the model annotation), stopped before the new pod is scheduled."""
    freed: dict[str, int] = {}
    for p in pods:
        if p.model and p.node and p.gpus and p.phase not in TERMINAL_PHASES:
            freed[p.node] = freed.get(p.node, 0) + p.gpus
    return freed


def check_placement(
    *,
    model: str,
    gpus: int,
    gpu_type: str,
    nodes: Sequence[GpuNode],
    pools: Sequence[NodePoolInfo] | None,
    freed: Mapping[str, int] | None = None,
) -> Placement:
    """Can a pod asking ``gpus`` x ``gpu_type`` ever be scheduled?

    Refused when no node or pool has that GPU type, when its nodes have fewer GPUs than
    the pod needs on one node, or when no node has room (counting ``freed``, the GPUs an
    in-place switch frees) and no pool of fitting nodes can grow (autoscaling below its
    maximum). ``pools`` None (GKE not configured or unreadable) decides from the running
    nodes alone and says so: then only a too-small node is refused.
    """
    freed = freed or {}
    gpu, partial = gpu_name(gpu_type), pools is None
    typed = [n for n in nodes if n.accelerator == gpu_type]
    typed_pools = [p for p in pools or () if p.has_gpus and p.accelerator_type == gpu_type]
    if not typed and not typed_pools:
        if partial:
            return Placement(True, f"No {gpu} node is running now.{_PARTIAL}", True)
        have = sorted({gpu_name(p.accelerator_type or "") for p in pools or () if p.has_gpus})
        return Placement(False, (
            f"The cluster has no node pool with {gpu} GPUs, so {model} can never be "
            f"scheduled. Choose a GPU type it has ({', '.join(have) or 'none'}), or create "
            f"a node pool with {gpu} GPUs."
        ))  # fmt: skip
    per_node = {p.name: p.accelerator_count for p in typed_pools}
    for n in typed:
        key = n.pool or n.name
        per_node[key] = max(per_node.get(key, 0), n.gpu_allocatable, n.gpu_capacity)
    if max(per_node.values()) < gpus:
        return Placement(False, _too_small(model, gpus, gpu_type, per_node, partial), partial)
    if any(n.ready and n.gpu_free + freed.get(n.name, 0) >= gpus for n in typed):
        return Placement(True, _PARTIAL.strip() if partial else "", partial)
    fitting = [p for p in typed_pools if p.accelerator_count >= gpus]
    # nodes of a pool GKE did not list (or with no pool label): whether it grows is unknown
    unlisted = {n.pool or n.name for n in typed} - {p.name for p in typed_pools}
    unknown = any(per_node[k] >= gpus for k in unlisted)
    if partial or unknown or any(_can_grow(p, nodes) for p in fitting):
        return Placement(True, _PARTIAL.strip() if partial else "", partial)
    return Placement(False, _no_room(model, gpus, gpu, fitting, nodes, bool(freed)))


def _too_small(model, gpus, gpu_type, per_node: Mapping[str, int], partial: bool) -> str:
    have = max(per_node.values())
    at_most = "at most " if len(set(per_node.values())) > 1 else ""
    machine = _GPU_SHAPES.get(gpu_type, ("", {}))[1].get(gpus)
    return (
        f"Nodes of {', '.join(sorted(per_node))} have {at_most}{have} × {gpu_name(gpu_type)}; "
        f"{model} needs {gpus} on one node. Choose {have} GPU(s) with a quantized or smaller "
        f"variant, or create a pool with {gpus} GPUs per node"
        + (f" ({machine})." if machine else ".")
        + (_PARTIAL if partial else "")
    )


def _live_nodes(pool: NodePoolInfo, nodes: Sequence[GpuNode]) -> int:
    if pool.node_count is not None:
        return pool.node_count
    return sum(1 for n in nodes if n.pool == pool.name)


def _can_grow(pool: NodePoolInfo, nodes: Sequence[GpuNode]) -> bool:
    return pool.autoscaling_enabled and _live_nodes(pool, nodes) < pool.max_nodes_total


def _no_room(model, gpus, gpu, fitting: Sequence[NodePoolInfo], nodes, freed: bool) -> str:
    limits = [
        f"{p.name} is at its maximum of {p.max_nodes_total} node(s)"
        if p.autoscaling_enabled
        else f"{p.name} has no autoscaling ({_live_nodes(p, nodes)} node(s))"
        for p in fitting
    ] or ["no node pool can add a node"]
    even = " even once the running model stops" if freed else ""
    return (
        f"No {gpu} node has {gpus} free GPU(s) for {model}{even}, and {'; '.join(limits)}. "
        "Raise the pool's maximum or resize it (Node pools, below), or stop what holds its GPUs."
    )


@dataclass(frozen=True)
class StrategyOption:
    """Whether a strategy may be offered, and why (in plain words)."""

    name: Strategy
    allowed: bool
    reason: str


def allowed_strategies(
    *,
    gpus_needed: int,
    free_gpus_by_node: Mapping[str, int],
    pool_nodes: int,
    pool_max_nodes: int | None,
    gpus_per_node: int,
) -> tuple[StrategyOption, StrategyOption]:
    """Decide which strategies fit the GPU pool.

    Blue/green needs room for a second vLLM pod next to the running one: a node with
    ``gpus_needed`` free GPUs now, or an autoscaling pool below its maximum whose nodes
    have enough GPUs. In place always works (it frees the GPUs first).
    """
    in_place = StrategyOption(
        "in_place",
        True,
        "The running model stops, then the new one loads: chat is unavailable meanwhile.",
    )
    roomy = sorted(n for n, free in free_gpus_by_node.items() if free >= gpus_needed)
    if roomy:
        why = f"Node {roomy[0]} has {free_gpus_by_node[roomy[0]]} free GPU(s): "
        return in_place, StrategyOption(
            "blue_green", True, why + "the new model loads next to the old one."
        )
    if gpus_per_node < gpus_needed:
        why = f"Nodes of this pool have {gpus_per_node} GPU(s); the model needs {gpus_needed}."
        return in_place, StrategyOption("blue_green", False, why)
    if pool_max_nodes is not None and pool_nodes < pool_max_nodes:
        why = (
            f"The pool can grow from {pool_nodes} to {pool_max_nodes} nodes: the autoscaler "
            "adds a node for the new model while the old one keeps serving."
        )
        return in_place, StrategyOption("blue_green", True, why)
    limit = "has no autoscaling" if pool_max_nodes is None else f"is at its maximum ({pool_nodes})"
    why = (
        f"No node has {gpus_needed} free GPU(s) and the pool {limit}: two models cannot run "
        "side by side. Use in place, or raise the pool's maximum."
    )
    return in_place, StrategyOption("blue_green", False, why)
