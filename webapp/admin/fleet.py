"""The fleet table of the admin page (issue 14), without Streamlit: one row per model pool.

A row joins what the cluster says of the pool (``cluster.fleet.list_pools``: model, GPU type,
replicas ready/desired, autoscaling, traffic share) with its live numbers, read from each ready
replica's vLLM ``/metrics`` through the API server's pod proxy
(``cluster.pod_metrics.pod_metrics_texts``) and parsed by ``llm.metrics``: requests waiting
(summed over replicas), KV-cache use (the fullest replica) and TTFT p95 (one histogram over
the replicas, since they started). A replica that does not answer leaves its numbers out and
is named in ``unread``; when none answers the cells are None, shown "—", and the row stays.

``read_fleet`` is the one read the page calls; ``fleet_row`` and ``pool_live`` are pure.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from webapp.cluster.errors import ClusterError
from webapp.cluster.fleet import list_pools
from webapp.cluster.fleet_objects import PoolState
from webapp.cluster.k8s import Cluster
from webapp.cluster.pod_metrics import PodMetrics, pod_metrics_texts
from webapp.cluster.pool_overrides import image_version
from webapp.cluster.scheduling import gpu_name
from webapp.llm.metrics import TTFT, MetricsUnavailable, histogram, parse_metrics, parse_samples

MISSING = "—"


@dataclass(frozen=True)
class PoolLive:
    """A pool's live numbers; None where no replica gave them. ``unread``: replicas that did
    not answer (or answered something that is not vLLM metrics), with why."""

    waiting: float | None = None
    kv_cache: float | None = None  # 0..1
    ttft_p95_s: float | None = None
    unread: tuple[str, ...] = ()


@dataclass(frozen=True)
class FleetRow:
    """One pool as the fleet table shows it."""

    pool: str
    model: str | None
    gpu_type: str | None
    gpus_per_replica: int
    ready: int
    replicas: int
    autoscaling: str  # "1–4 (target 4 waiting)", "off"
    share: str  # "100%", "95% (vllm-b 5%)"
    live: PoolLive
    asleep: bool = False
    deployed: bool = True
    vllm: str = MISSING  # the vLLM version its image names ("v0.32.0"), a canary may change it

    @property
    def gpus(self) -> str:
        """What each replica runs on, as the table says it: "1 × L4"; "—" when unknown."""
        if not self.gpu_type:
            return MISSING
        return f"{self.gpus_per_replica} × {gpu_name(self.gpu_type)}"


@dataclass(frozen=True)
class Fleet:
    """One read of the fleet: the rows, or the error that stopped the pools being listed."""

    rows: tuple[FleetRow, ...] = ()
    error: ClusterError | None = None

    def row(self, pool: str) -> FleetRow | None:
        return next((r for r in self.rows if r.pool == pool), None)


def pool_live(pods: Sequence[PodMetrics]) -> PoolLive:
    """The pool's numbers from its replicas' texts (pure). A text without vLLM gauges counts
    as a replica that did not answer."""
    read: list[str] = []
    waiting, kv, unread = 0.0, None, []
    for pod in pods:
        try:
            snap = parse_metrics(pod.text or "")
        except MetricsUnavailable as exc:
            unread.append(f"{pod.pod}: {pod.problem or exc}")
            continue
        read.append(pod.text or "")
        waiting += snap.num_requests_waiting
        if snap.kv_cache_usage is not None:
            kv = max(kv or 0.0, snap.kv_cache_usage)
    if not read:
        return PoolLive(unread=tuple(unread))
    ttft = histogram(parse_samples("\n".join(read) + "\n"), TTFT)
    p95 = ttft.quantile(0.95) if ttft is not None else None
    return PoolLive(waiting, kv, p95, tuple(unread))


def _autoscaling(state: PoolState) -> str:
    a = state.autoscaling
    if a is None:
        return "off"
    low = 0 if a.scale_to_zero else a.min_replicas
    return f"{low}–{a.max_replicas} (target {a.target_waiting:g} waiting)"


def _share(state: PoolState) -> str:
    mine = [b.weight for b in state.backends if b.pool == state.name]
    if not mine:
        return "0% (no route)" if state.deployed else MISSING
    others = [f"{b.pool} {b.weight}%" for b in state.backends if b.pool != state.name]
    return f"{mine[0]}%" + (f" ({', '.join(others)})" if others else "")


def fleet_row(state: PoolState, pods: Sequence[PodMetrics]) -> FleetRow:
    """A table row from the pool's state and its replicas' /metrics (pure)."""
    return FleetRow(
        pool=state.name, model=state.model, gpu_type=state.gpu_type,
        gpus_per_replica=state.gpus_per_replica, ready=state.ready, replicas=state.replicas,
        autoscaling=_autoscaling(state), share=_share(state), live=pool_live(pods),
        asleep=state.asleep, deployed=state.deployed,
        vllm=image_version(state.image) if state.image else MISSING,
    )  # fmt: skip


def cell(value: float | None, fmt: str) -> str:
    """A live number as the table shows it; "—" when it could not be read."""
    return MISSING if value is None else format(value, fmt)


def read_fleet(cluster: Cluster, namespace: str, *, timeout: float = 2.0) -> Fleet:
    """Every pool with its live numbers: 4 Kubernetes reads for the pools, then per pool one
    pod list and one proxied GET per ready replica (``timeout`` seconds each). A pool whose
    pods cannot be listed keeps its row, numbers "—"; the pools not listed is ``error``."""
    try:
        states = list_pools(cluster, namespace)
    except ClusterError as exc:
        return Fleet(error=exc)
    rows = []
    for state in states:
        try:
            pods = pod_metrics_texts(cluster, namespace, state.name, timeout=timeout)
        except ClusterError as exc:
            pods = [PodMetrics(state.name, None, f"its pods could not be listed ({exc})")]
        rows.append(fleet_row(state, pods))
    return Fleet(tuple(rows))
