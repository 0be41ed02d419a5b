"""Where a vLLM pod can run: switch strategies the GPU pool allows (pure decisions).

Nothing here calls an API: the callers pass what they read (GPU nodes from Kubernetes,
node pools from GKE) and get plain-language answers back.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

Strategy = Literal["in_place", "blue_green"]


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
