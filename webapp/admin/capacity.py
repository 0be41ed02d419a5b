"""The capacity guard: before a deploy, scale or canary, can the GPU pool hold the replicas
it adds? Said before anything changes, with what to change, instead of pods left Pending.

* ``check_capacity`` (pure) decides from what was read: GPU nodes (Kubernetes), node pools
  (GKE: GPUs per node, autoscaling maximum) and the region's GPU quota (Compute Engine). The
  replicas fit now (free GPUs of the type on ready nodes), fit once the autoscaler adds nodes
  (each within its pool's maximum and the quota), or do not fit: then the verdict says what
  to change (raise a pool's maximum, ask for quota, choose fewer replicas, create a pool).
* ``require_capacity`` reads those inputs (through ``webapp.cluster``) and raises
  ``NotEnoughCapacity`` with the verdict's message when it does not fit. What could not be
  read (GKE's pools, the quota) is said in the verdict and never blocks.

A replica needs all its GPUs on one node (tensor parallelism inside one pod). GPUs requested
by other namespaces' pods are not seen (``cluster.inventory``): a node they fill looks free.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from functools import partial
from typing import Any

from webapp.admin.errors import InvalidCapacityRequest, NotEnoughCapacity
from webapp.cluster.errors import NodePoolError, QuotaUnreadable
from webapp.cluster.inventory import GpuNode, Inventory, inventory
from webapp.cluster.k8s import Cluster
from webapp.cluster.node_pools import NodePoolInfo, NodePools
from webapp.cluster.quota import RegionQuotas, gpu_quota_metric, gpu_quotas
from webapp.cluster.scheduling import gpu_name


class Fit(StrEnum):
    NOW = "fits_now"  # free GPUs on ready nodes hold every replica
    AFTER_GROWTH = "fits_after_growth"  # the autoscaler adds nodes within max and quota
    UNCHECKED = "unchecked"  # not enough free now, and GKE's pools could not be read
    NO = "does_not_fit"


@dataclass(frozen=True)
class CapacityRequest:
    """Replicas to add, each asking ``gpus_per_replica`` x ``gpu_type`` on one node.

    A deploy adds all its replicas; a scale adds new - current (``for_scale``); a canary adds
    the canary pool's replicas while the stable pool keeps its own."""

    gpu_type: str
    gpus_per_replica: int
    replicas: int
    what: str = "the model"  # named in the messages

    @classmethod
    def for_scale(
        cls, gpu_type: str, gpus_per_replica: int, *, current: int, new: int, what: str = ""
    ) -> CapacityRequest:
        """Scaling from ``current`` to ``new`` replicas adds ``new - current`` (none when down)."""
        return cls(gpu_type, gpus_per_replica, max(0, new - current), what or "the model")


@dataclass(frozen=True)
class CapacityVerdict:
    """The guard's answer. ``message``: one plain paragraph for the page (why, and what to
    change when it does not fit); ``at_most``: replicas that can be added at all (None when
    unknown); ``growth``: new nodes per pool the autoscaler would add."""

    fit: Fit
    message: str
    fit_now: int
    at_most: int | None
    growth: dict[str, int] = field(default_factory=dict)
    quota_checked: bool = False

    @property
    def blocks(self) -> bool:
        return self.fit is Fit.NO


@dataclass
class _Grow:
    """How many nodes one fitting pool may still add, and how many it would."""

    pool: NodePoolInfo
    live: int
    per_node: int  # replicas one new node holds
    headroom: int  # nodes below the autoscaling maximum (0 without autoscaling)
    taken: int = 0


def check_capacity(
    request: CapacityRequest,
    inv: Inventory,
    node_pools: Sequence[NodePoolInfo] | None,
    quota: RegionQuotas | None,
    *,
    quota_reason: str = "",
) -> CapacityVerdict:
    """Can the cluster hold ``request``'s replicas? ``node_pools`` None: GKE's pools unknown
    (the check is then partial and never refuses on growth); ``quota`` None: not read
    (``quota_reason`` says why; never blocks). Raises ``InvalidCapacityRequest``."""
    per, want = _validate(request)
    gpu = gpu_name(request.gpu_type)
    nodes = [n for n in inv.nodes if n.accelerator == request.gpu_type]
    pools = None
    if node_pools is not None:
        pools = [p for p in node_pools if p.has_gpus and p.accelerator_type == request.gpu_type]
    if want == 0:
        return CapacityVerdict(Fit.NOW, "No replica is added: nothing more to hold.", 0, None)
    if not nodes and not pools:
        return _no_pool(request, node_pools)
    biggest = max([p.accelerator_count for p in pools or ()] + [_gpus(n) for n in nodes])
    if biggest < per:
        return _too_small(request, biggest)
    now = sum(n.gpu_free // per for n in nodes if n.ready)
    what = f"{_replicas(want)} of {request.what} ({want * per} × {gpu})"
    if now >= want:
        return CapacityVerdict(Fit.NOW, f"{what} {_fit(want)} on free {gpu} GPUs now.", want, want)
    if pools is None:
        return CapacityVerdict(Fit.UNCHECKED, (
            f"{_free_now(now, want)} GKE's node pools could not be read, so whether the "
            f"pool can add nodes for the rest was not checked."
        ), now, None)  # fmt: skip
    grows = _plan_growth(request, inv, pools, quota, want - now)
    added = sum(g.taken * g.per_node for g in grows)
    growth = {g.pool.name: g.taken for g in grows if g.taken}
    quota_note = _quota_note(request, grows, quota, quota_reason)
    if added >= want - now:
        said = ", ".join(f"{k} node(s) to {name}" for name, k in growth.items())
        message = f"{_free_now(now, want)} The autoscaler adds {said} for the rest.{quota_note}"
        return CapacityVerdict(Fit.AFTER_GROWTH, message, now, None, growth, quota is not None)
    changes = _what_to_change(request, grows, quota, want - now - added)
    message = (
        f"{what} {'does' if want == 1 else 'do'} not fit: {now} {_fit(now)} on free GPUs now "
        f"and {added} more once the node pool grows. {_sentences(changes, now + added)}"
        f"{quota_note}"
    )
    return CapacityVerdict(Fit.NO, message, now, now + added, growth, quota is not None)


def _validate(request: CapacityRequest) -> tuple[int, int]:
    per, want = request.gpus_per_replica, request.replicas
    for value, name in ((per, "GPUs per replica"), (want, "replicas to add")):
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise InvalidCapacityRequest(f"The number of {name} must be a whole number, 0 or more.")
    if per < 1:
        raise InvalidCapacityRequest("A replica needs at least 1 GPU.")
    if not request.gpu_type:
        raise InvalidCapacityRequest("Choose a GPU type.")
    return per, want


def _gpus(node: GpuNode) -> int:
    return max(node.gpu_allocatable, node.gpu_capacity)


def _replicas(n: int) -> str:
    return f"{n} replica" + ("" if n == 1 else "s")


def _fit(n: int) -> str:
    return "fits" if n == 1 else "fit"


def _free_now(now: int, want: int) -> str:
    return f"{now} of {_replicas(want)} {_fit(now)} on free GPUs now."


def _setup(request: CapacityRequest) -> str:
    return (
        f"scripts/setup_gke.sh with GPU_TYPE={request.gpu_type} "
        f"GPU_COUNT={request.gpus_per_replica} GPU_POOL=<new pool name>"
    )


def _no_pool(
    request: CapacityRequest, node_pools: Sequence[NodePoolInfo] | None
) -> CapacityVerdict:
    gpu = gpu_name(request.gpu_type)
    if node_pools is None:
        return CapacityVerdict(Fit.UNCHECKED, (
            f"No {gpu} node is running, and GKE's node pools could not be read: whether a "
            f"pool can add {gpu} nodes was not checked."
        ), 0, None)  # fmt: skip
    have = sorted({gpu_name(p.accelerator_type or "") for p in node_pools if p.has_gpus})
    return CapacityVerdict(Fit.NO, (
        f"No node pool has {gpu} GPUs: create one ({_setup(request)}), or choose a GPU type "
        f"the cluster has ({', '.join(have) or 'none'})."
    ), 0, 0)  # fmt: skip


def _too_small(request: CapacityRequest, biggest: int) -> CapacityVerdict:
    gpu = gpu_name(request.gpu_type)
    return CapacityVerdict(Fit.NO, (
        f"Nodes with {gpu} GPUs have at most {biggest}; each replica of {request.what} needs "
        f"{request.gpus_per_replica} on one node. Create a pool with "
        f"{request.gpus_per_replica} GPUs per node ({_setup(request)}), or choose a smaller "
        "or quantized model."
    ), 0, 0)  # fmt: skip


def _plan_growth(
    request: CapacityRequest,
    inv: Inventory,
    pools: Sequence[NodePoolInfo],
    quota: RegionQuotas | None,
    missing: int,
) -> list[_Grow]:
    """Fitting pools, the roomiest autoscaling ones first, each taking the nodes the missing
    replicas need within its maximum and what is left of its GPU quota."""
    per = request.gpus_per_replica
    grows = [
        _Grow(p, live, p.accelerator_count // per, _headroom(p, live))
        for p in pools
        if p.accelerator_count >= per
        for live in [_live_nodes(p, inv)]
    ]
    grows.sort(key=lambda g: (not g.pool.autoscaling_enabled, -g.per_node, g.pool.name))
    left: dict[str, float] = {}  # GPUs of quota left per metric, once read
    for g in grows:
        q = quota.gpu_quota(request.gpu_type, spot=g.pool.spot) if quota else None
        if q is not None:
            left.setdefault(q.metric, q.available)
        by_quota = g.headroom if q is None else int(left[q.metric] // g.pool.accelerator_count)
        g.taken = min(g.headroom, by_quota, math.ceil(missing / g.per_node))
        missing -= g.taken * g.per_node
        if q is not None:
            left[q.metric] -= g.taken * g.pool.accelerator_count
        if missing <= 0:
            break
    return grows


def _live_nodes(pool: NodePoolInfo, inv: Inventory) -> int:
    if pool.node_count is not None:
        return pool.node_count
    return inv.pool_node_counts.get(pool.name, sum(1 for n in inv.nodes if n.pool == pool.name))


def _headroom(pool: NodePoolInfo, live: int) -> int:
    return max(0, pool.max_nodes_total - live) if pool.autoscaling_enabled else 0


def _what_to_change(
    request: CapacityRequest, grows: list[_Grow], quota: RegionQuotas | None, missing: int
) -> list[str]:
    """Raise the best pool's maximum (or turn on its autoscaling) and/or ask for the quota
    its extra nodes need."""
    if not grows:
        return [f"no node pool with {request.gpus_per_replica} {gpu_name(request.gpu_type)} "
                f"GPUs per node can grow: create one ({_setup(request)})"]  # fmt: skip
    best = grows[0]
    extra = math.ceil(missing / best.per_node)  # nodes beyond what was planned
    changes = []
    beyond_max = extra - (best.headroom - best.taken)
    if beyond_max > 0:
        target = best.live + best.taken + extra
        if best.pool.autoscaling_enabled:
            changes.append(f"raise the node pool {best.pool.name}'s maximum from "
                           f"{best.pool.max_nodes_total} to {target} nodes{_per_zone(best.pool, target)}")  # fmt: skip
        else:
            changes.append(
                f"turn on autoscaling for node pool {best.pool.name} with a maximum of "
                f"{target} nodes"
            )
    q = quota.gpu_quota(request.gpu_type, spot=best.pool.spot) if quota else None
    if q is not None:
        planned = sum(g.taken * g.pool.accelerator_count for g in grows
                      if quota and quota.gpu_quota(request.gpu_type, spot=g.pool.spot) == q)  # fmt: skip
        short = planned + extra * best.pool.accelerator_count - q.available
        if short > 0:
            changes.append(
                f"ask for GPU quota: {q.metric} in {quota.region} is {q.limit:g}, "
                f"{q.usage:g} used ({short:g} more needed)"
            )
    return changes


def _per_zone(pool: NodePoolInfo, total: int) -> str:
    """GKE keeps a per-zone maximum unless the pool has total limits: say it per zone too."""
    if pool.total_limits or pool.zones <= 1:
        return ""
    per_zone = math.ceil(total / pool.zones)
    return f" (per zone: from {pool.max_nodes} to {per_zone}, in {pool.zones} zones)"


def _sentences(changes: list[str], at_most: int) -> str:
    todo = "; ".join(changes)
    if not todo:
        return f"Choose fewer replicas (at most {at_most} {_fit(at_most)})."
    if not at_most:
        return f"To make room: {todo}. Until then no replica fits."
    return f"To make room: {todo}; or choose fewer replicas (at most {at_most} {_fit(at_most)})."


def _quota_note(
    request: CapacityRequest, grows: list[_Grow], quota: RegionQuotas | None, reason: str
) -> str:
    """What the quota check could not see (never a refusal)."""
    if quota is None:
        return " The GPU quota was not checked" + (f" ({reason})." if reason else ".")
    unlisted = sorted({
        gpu_quota_metric(request.gpu_type, spot=g.pool.spot) or request.gpu_type
        for g in grows[:1] + [g for g in grows if g.taken]
        if quota.gpu_quota(request.gpu_type, spot=g.pool.spot) is None
    })  # fmt: skip
    if unlisted:
        return f" The region lists no quota {', '.join(unlisted)}: the quota was not checked."
    return ""


def require_capacity(
    cluster: Cluster,
    namespace: str,
    request: CapacityRequest,
    pools: NodePools | None,
    read_quota: Callable[[], RegionQuotas] | None = None,
) -> CapacityVerdict:
    """Read the GPU nodes (3 Kubernetes calls) and GKE's pools (1 call), and the region's
    quota (``read_quota``, e.g. ``partial(cluster.quota.gpu_quotas, settings)``: 1 call, only
    when nodes must be added); raise ``NotEnoughCapacity`` when ``request`` does not fit.
    Unreadable pools or quota make the check partial, never a refusal; an unreadable cluster
    raises its ClusterError. Returns the verdict (what fits, what was not checked)."""
    inv = inventory(cluster, namespace)
    try:
        infos = pools.list_node_pools() if pools is not None else None
    except NodePoolError:
        infos = None
    verdict = check_capacity(request, inv, infos, None)
    if read_quota is not None and verdict.fit in (Fit.AFTER_GROWTH, Fit.NO):
        try:  # new nodes alone count against the quota
            verdict = check_capacity(request, inv, infos, read_quota())
        except QuotaUnreadable as exc:
            verdict = check_capacity(request, inv, infos, None, quota_reason=str(exc))
    if verdict.blocks:
        raise NotEnoughCapacity(verdict.message, verdict)
    return verdict


def quota_reader(settings: Any) -> Callable[[], RegionQuotas] | None:
    """What reads the cluster's region quota (``cluster.quota.gpu_quotas``); None when GKE
    is not configured (GKE_PROJECT, GKE_LOCATION, GKE_CLUSTER): no region to ask."""
    return partial(gpu_quotas, settings) if settings.gke_configured else None
