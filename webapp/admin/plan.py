"""Planning a deploy, without Streamlit: size the model, check the pool can run it, choose
how to switch.

* ``plan_deploy`` maps a catalog entry plus the admin's choices (GPU, count, context,
  concurrency) onto a sizing verdict and a ``manifests.ModelSpec``; a plan whose
  verdict cannot run is ``blocked`` with the reason.
* ``strategy_options`` (for the deploy form) and ``require_placement`` (for the switch job,
  before a switch changes anything) ask ``cluster.scheduling.check_placement`` whether
  the GPU pool can ever schedule the model's pod: a deploy the pool cannot run is refused
  with the reason and what to change, whoever asks.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from webapp.admin.catalog import CatalogModel
from webapp.admin.sizing import SizingResult, Verdict, size_model
from webapp.cluster import model_spec as mf
from webapp.cluster.errors import NodePoolError, PoolCannotSchedule
from webapp.cluster.inventory import Inventory, free_gpus, inventory
from webapp.cluster.k8s import Cluster
from webapp.cluster.node_pools import NodePoolInfo, NodePools
from webapp.cluster.scheduling import (
    Placement,
    StrategyOption,
    allowed_strategies,
    check_placement,
    freed_by_in_place,
)

_DTYPES = {"fp16": "float16", "bf16": "bfloat16"}
# quantizations vLLM can apply to unquantized weights at load time
_ONLINE_QUANTIZATION = frozenset({"fp8"})
#: the deploy form's "Tokens per streamed chunk" (vLLM's --stream-interval): default, range
DEFAULT_STREAM_INTERVAL = mf.DEFAULT_STREAM_INTERVAL
STREAM_INTERVALS = mf.STREAM_INTERVALS


@dataclass(frozen=True)
class DeployPlan:
    """A catalog entry sized for the chosen GPUs; ``spec`` is None when ``blocked``."""

    model: CatalogModel
    sizing: SizingResult
    spec: mf.ModelSpec | None
    blocked: str = ""


def plan_deploy(
    model: CatalogModel,
    *,
    gpu: str,
    gpu_count: int,
    max_model_len: int,
    concurrency: int = 1,
    gpu_memory_utilization: float = 0.90,
    image: str | None = None,
    stream_interval: int = DEFAULT_STREAM_INTERVAL,
) -> DeployPlan:
    """Size ``model`` on ``gpu_count`` x ``gpu`` and build the ModelSpec to deploy
    (``stream_interval``: vLLM's tokens per streamed chunk, checked by ``validate_spec``).

    Blocked: DOES_NOT_FIT; a fit that needs more GPUs than one node of this type has;
    a quantization (AWQ/GPTQ) that needs a different, pre-quantized checkpoint.
    Raises ``SizingError`` for impossible inputs (e.g. context above the model's maximum).
    """
    sizing = size_model(
        model.shape, gpu, gpu_count, max_model_len=max_model_len, concurrency=concurrency,
        gpu_memory_utilization=gpu_memory_utilization,
    )  # fmt: skip
    blocked = ""
    quantization = None if model.quantization == "none" else model.quantization
    if sizing.verdict is Verdict.DOES_NOT_FIT:
        blocked = (
            f"{model.id} does not fit: {sizing.explanation} Choose a larger GPU, a shorter "
            "max context, lower concurrency or a smaller model."
        )
    elif sizing.verdict is Verdict.NEEDS_QUANTIZATION:
        if sizing.quantization in _ONLINE_QUANTIZATION:
            quantization = sizing.quantization
        else:
            blocked = (
                f"{model.id} only fits with {sizing.quantization} weights, which needs a "
                f"pre-quantized checkpoint: pick a {sizing.quantization} variant from the "
                "catalog or use more/larger GPUs."
            )
    if not blocked and not sizing.within_budget:
        blocked = (
            f"{model.id} needs {sizing.tensor_parallel} GPUs ({sizing.label}) but you chose "
            f"{gpu_count}: raise the GPU count to {sizing.tensor_parallel}."
        )
    if blocked:
        return DeployPlan(model, sizing, None, blocked)
    spec = mf.ModelSpec(
        name=model.id,
        hf_repo=model.hf_repo,
        revision=model.revision,
        max_model_len=max_model_len,
        tensor_parallel_size=sizing.tensor_parallel,
        gpu_type=gpu,
        gpu_memory_utilization=gpu_memory_utilization,
        dtype=_DTYPES.get(model.dtype, "auto"),
        quantization=quantization,
        trust_remote_code=model.trust_remote_code,
        image=image,
        stream_interval=stream_interval,
    )
    return DeployPlan(model, sizing, mf.validate_spec(spec))


def strategy_options(
    inv: Inventory,
    pools: Sequence[NodePoolInfo] | None,
    *,
    gpus_needed: int,
    gpu_type: str,
    pool: str,
    model: str = "the model",
) -> tuple[StrategyOption, StrategyOption]:
    """Which switch strategies the pool allows, from live nodes and (if known) GKE's pools.

    ``pools`` None means GKE's node pools are unknown (not configured or unreadable): the
    check is then partial and says so. When the pool can never schedule the model, both
    strategies are refused with the same reason.
    """

    def place(freed: dict[str, int] | None) -> Placement:
        return check_placement(
            model=model, gpus=gpus_needed, gpu_type=gpu_type, nodes=inv.nodes, pools=pools,
            freed=freed,
        )  # fmt: skip

    in_place_fit = place(freed_by_in_place(inv.pods))
    if not in_place_fit.ok:
        no = in_place_fit.reason
        return StrategyOption("in_place", False, no), StrategyOption("blue_green", False, no)
    nodes = [n for n in inv.nodes if n.accelerator == gpu_type]
    in_pool = [n for n in nodes if n.pool == pool] or nodes
    info = next((p for p in pools or () if p.name == pool), None)
    per_node = max((n.gpu_allocatable for n in in_pool), default=0)
    if info is not None and info.accelerator_count:
        per_node = max(per_node, info.accelerator_count)
    max_nodes = info.max_nodes_total if info is not None and info.autoscaling_enabled else None
    in_place, blue_green = allowed_strategies(
        gpus_needed=gpus_needed,
        free_gpus_by_node=free_gpus(nodes, gpu_type),
        pool_nodes=len(in_pool),
        pool_max_nodes=max_nodes,
        gpus_per_node=per_node,
    )
    beside = place(None)  # blue/green: the running model keeps its GPUs
    if blue_green.allowed and not beside.ok:
        blue_green = StrategyOption("blue_green", False, beside.reason)
    if in_place_fit.reason:  # what a partial check could not see
        in_place = replace(in_place, reason=f"{in_place.reason} {in_place_fit.reason}")
    return in_place, blue_green


def require_placement(
    cluster: Cluster,
    namespace: str,
    spec: mf.ModelSpec,
    pools: NodePools | None,
    *,
    in_place: bool,
) -> Placement:
    """Read the GPU nodes (3 Kubernetes calls) and GKE's pools (1 call), and raise
    ``PoolCannotSchedule`` if ``spec``'s pod can never be scheduled. Unreadable pools make
    the check partial (running nodes only); an unreadable cluster raises its ClusterError."""
    inv = inventory(cluster, namespace)
    try:
        infos = pools.list_node_pools() if pools is not None else None
    except NodePoolError:
        infos = None
    fit = check_placement(
        model=spec.name,
        gpus=spec.tensor_parallel_size,
        gpu_type=spec.gpu_type,
        nodes=inv.nodes,
        pools=infos,
        freed=freed_by_in_place(inv.pods) if in_place else None,
    )
    if not fit.ok:
        raise PoolCannotSchedule(fit.reason)
    return fit
