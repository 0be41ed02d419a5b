"""The fleet's admin actions, one ``JobDefinition`` each (``webapp.admin.jobs``), issue 14:

* ``POOL_DEPLOY`` — a catalog model as a new pool beside the others (``fleet.create_pool``);
* ``POOL_REMOVE`` — remove a pool (``fleet.remove_pool``; the default pool and a pool sharing
  a canary's traffic are refused);
* ``POOL_SCALE`` — set a pool's replicas (0: asleep; ``fleet_scaling.scale_pool``);
* ``POOL_AUTOSCALE`` — an HPA on the queue depth; min 0 is a KEDA ScaledObject that puts an
  idle pool to sleep (``set_autoscaling``).

Every ``begin`` refuses bad input first (a pool name that is not RFC 1123, a model not in the
catalog, min above max, replicas out of range) and writes nothing then; it then takes the
pool's Lease (``lock.acquire_lock(pool=...)``: an admin of another console on the same pool is
refused, ``SwitchInProgress`` naming the holder) and, for what adds replicas, the capacity
guard (``capacity.require_capacity``). ``run`` writes, follows the replicas until they are
ready (deploy, scale up) and releases the Lease. Audited as pool.deploy, pool.remove,
pool.scale and pool.autoscale (started/refused, then done or failed).

One job per pool per process: ``start_pool_job`` runs a definition under the kind
``pool:<name>``, so two admins act on two pools at once and the page finds a pool's job by
``pool_job``. (Switching a pool's model is the canary's, ``webapp.admin.canary_job``.)
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from webapp.admin.audit import AuditLog
from webapp.admin.capacity import CapacityRequest, require_capacity
from webapp.admin.jobs import Job, JobDefinition, JobRegistry, JobView
from webapp.cluster import fleet, fleet_scaling, pools
from webapp.cluster import fleet_objects as fo
from webapp.cluster.errors import (
    InvalidAutoscaling,
    ModelAlreadyServed,
    PoolNotFound,
    SwitchInProgress,
)
from webapp.cluster.fleet_objects import PoolState
from webapp.cluster.k8s import Cluster
from webapp.cluster.keda_objects import COOLDOWN_SECONDS
from webapp.cluster.lock import SwitchLock, acquire_lock
from webapp.cluster.node_pools import NodePools
from webapp.cluster.pools import PoolSpec

READY_TIMEOUT_S = 900.0  # a model download and load; the rows keep showing it after that

#: the autoscaling form's help for a minimum of 0 (KEDA's cooldown, webapp.cluster.keda_objects)
SCALE_TO_ZERO_HELP = (
    f"0: the pool sleeps (no GPU used) after {COOLDOWN_SECONDS // 60} minutes without a "
    "request, and the chat wakes it when someone asks its model: the first answer then waits "
    "for the model to load (minutes). Needs KEDA in the cluster and GKE_PROJECT set."
)


@dataclass(frozen=True)
class PoolAction:
    """What every pool action needs: the cluster, the namespace and the pool."""

    cluster: Cluster = field(compare=False)
    namespace: str
    pool: str


@dataclass(frozen=True)
class DeployPool(PoolAction):
    """Serve catalog model ``model`` (``hf_repo``) as new pool ``pool`` with ``replicas``,
    each on ``gpus_per_replica`` x ``gpu_type`` (the default pool's, which it copies)."""

    model: str = ""
    hf_repo: str = ""
    max_model_len: int = 4096
    replicas: int = 1
    catalog_ids: tuple[str, ...] = ()
    gpu_type: str = ""
    gpus_per_replica: int = 1
    node_pools: NodePools | None = field(default=None, compare=False)
    read_quota: Callable[[], Any] | None = field(default=None, compare=False)
    poll_s: float = 2.0


@dataclass(frozen=True)
class RemovePool(PoolAction):
    pass


@dataclass(frozen=True)
class ScalePool(PoolAction):
    """Set ``pool`` to ``replicas`` (0: asleep until the chat wakes it)."""

    replicas: int = 1
    node_pools: NodePools | None = field(default=None, compare=False)
    read_quota: Callable[[], Any] | None = field(default=None, compare=False)
    poll_s: float = 2.0


@dataclass(frozen=True)
class AutoscalePool(PoolAction):
    """Keep ``pool`` between ``min_replicas`` (0: scale to zero, a KEDA ScaledObject querying
    the managed Prometheus of ``project``, GKE_PROJECT) and ``max_replicas``, aiming at
    ``target_waiting`` requests waiting per replica."""

    min_replicas: int = 1
    max_replicas: int = 1
    target_waiting: float = 4.0
    project: str = ""


def pool_kind(pool: str) -> str:
    """The registry slot of a pool's jobs: one running action per pool in this process."""
    return f"pool:{pool}"


def start_pool_job(
    registry: JobRegistry, definition: JobDefinition, request: PoolAction, *, actor: str,
    audit: AuditLog | None = None,
) -> Job:  # fmt: skip
    """Start ``definition`` on ``request.pool``; raises its refusals (typed) before any write."""
    return registry.start(
        replace(definition, kind=pool_kind(request.pool)), request, actor=actor, audit=audit
    )


def cancel_pool_job(
    registry: JobRegistry, definition: JobDefinition, pool: str, *, actor: str,
    audit: AuditLog | None = None,
) -> bool:  # fmt: skip
    """Stop following ``pool``'s running ``definition`` job (deploy, scale); False if none."""
    return registry.cancel(replace(definition, kind=pool_kind(pool)), actor, audit)


def pool_job(registry: JobRegistry, pool: str) -> Job | None:
    """The latest job on ``pool`` in this process (running or finished), if any."""
    return registry.current(pool_kind(pool))


def pool_busy(view: JobView) -> Exception:
    """The refusal while this console runs a job on the pool: the same words as its Lease."""
    pool = view.kind.removeprefix("pool:")
    return SwitchInProgress(view.actor, view.started_at.isoformat(timespec="seconds"), pool=pool)


def _state(req: PoolAction) -> PoolState:
    for state in fleet.list_pools(req.cluster, req.namespace):
        if state.name == req.pool:
            return state
    raise PoolNotFound(req.pool)


def _lock(req: PoolAction, job: Job) -> SwitchLock:
    lock = acquire_lock(req.cluster, req.namespace, job.actor, pool=req.pool)
    job.progress(f"{job.actor} holds the lock of pool {req.pool}.")
    return lock


def _guarded(req: PoolAction, job: Job, check: Callable[[], None]) -> SwitchLock:
    """Take the pool's Lease, then run ``check`` (the capacity guard); release on refusal."""
    lock = _lock(req, job)
    try:
        check()
    except BaseException:
        lock.release()
        raise
    return lock


def _wait_ready(req: PoolAction, job: Job, lock: SwitchLock, want: int, poll_s: float) -> str:
    """Follow the pool until ``want`` replicas are ready (or cancel, or the timeout)."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    while True:
        state = _state(req)
        job.progress(f"{req.pool}: {state.ready}/{state.replicas} replicas ready.", detail=state)
        if state.ready >= want:
            return "done"
        if job.cancel.is_set() or time.monotonic() > deadline:
            return "waiting"  # the change is made; the replicas keep starting
        lock.renew()
        job.cancel.wait(poll_s)


# ---------------------------------------------------------------- deploy


def _begin_deploy(req: DeployPool, job: Job) -> tuple[DeployPool, SwitchLock]:
    spec = PoolSpec(req.pool, req.model, req.replicas, req.replicas, max(1, req.replicas))
    pools.validate_pool(spec, req.catalog_ids)
    served = fleet.served_models(req.cluster, req.namespace)
    if req.model in served:
        owners = tuple(s.name for s in fleet.list_pools(req.cluster, req.namespace)
                       if s.model == req.model)  # fmt: skip
        raise ModelAlreadyServed(req.model, owners)
    capacity = CapacityRequest(req.gpu_type, req.gpus_per_replica, req.replicas,
                               what=f"pool {req.pool} ({req.model})")  # fmt: skip
    return req, _guarded(req, job, lambda: _capacity(req, capacity, req.node_pools, req.read_quota))


def _capacity(req: PoolAction, capacity: CapacityRequest, node_pools, read_quota) -> None:
    if capacity.replicas > 0:
        require_capacity(req.cluster, req.namespace, capacity, node_pools, read_quota)


def _run_deploy(held: tuple[DeployPool, SwitchLock], job: Job) -> str:
    req, lock = held
    try:
        spec = PoolSpec(req.pool, req.model, req.replicas, req.replicas, max(1, req.replicas))
        job.progress(f"Creating pool {req.pool} for {req.model} ({req.replicas} replica(s)).")
        fleet.create_pool(req.cluster, req.namespace, spec, hf_repo=req.hf_repo,
                          max_model_len=req.max_model_len, catalog_ids=req.catalog_ids)  # fmt: skip
        job.progress(f"Pool {req.pool} created; the gateway routes {req.model} to it.")
        return _wait_ready(req, job, lock, req.replicas, req.poll_s)
    finally:
        lock.release()


POOL_DEPLOY: JobDefinition[DeployPool, tuple[DeployPool, SwitchLock], str] = JobDefinition(
    kind="pool", target=lambda r: f"{r.namespace}/{r.pool}",
    details=lambda r: {"pool": r.pool, "model": r.model, "replicas": r.replicas},
    begin=_begin_deploy, run=_run_deploy,
    audit_start="pool.deploy", audit_result="pool.deploy",
    outcome=lambda res: (res, {}), busy=pool_busy, audit_cancel="pool.deploy",
    cancel_note="{actor} stopped following the replicas; the pool stays (remove it to undo).",
)  # fmt: skip

# ---------------------------------------------------------------- remove, scale, autoscale


def _begin_remove(req: RemovePool, job: Job) -> tuple[RemovePool, SwitchLock]:
    _state(req)  # PoolNotFound before the Lease
    fo.without_pool(fleet.read_route(req.cluster, req.namespace), req.pool)  # PoolInUse
    return req, _lock(req, job)


def _run_remove(held: tuple[RemovePool, SwitchLock], job: Job) -> str:
    req, lock = held
    try:
        fleet.remove_pool(req.cluster, req.namespace, req.pool)
        job.progress(f"Pool {req.pool} removed.")
        return "done"
    finally:
        lock.release()


POOL_REMOVE: JobDefinition[RemovePool, tuple[RemovePool, SwitchLock], str] = JobDefinition(
    kind="pool", target=lambda r: f"{r.namespace}/{r.pool}",
    details=lambda r: {"pool": r.pool},
    begin=_begin_remove, run=_run_remove, audit_start="pool.remove", audit_result="pool.remove",
    outcome=lambda res: (res, {}), busy=pool_busy,
)  # fmt: skip


def _check_replicas(replicas: object) -> None:
    if isinstance(replicas, bool) or not isinstance(replicas, int):
        raise InvalidAutoscaling("The number of replicas must be a whole number.")
    if not 0 <= replicas <= pools.MAX_REPLICAS:
        raise InvalidAutoscaling(f"Replicas must be from 0 to {pools.MAX_REPLICAS}.")


def _begin_scale(req: ScalePool, job: Job) -> tuple[ScalePool, SwitchLock, int]:
    _check_replicas(req.replicas)
    state = _state(req)
    capacity = CapacityRequest.for_scale(
        state.gpu_type or "", state.gpus_per_replica, current=state.replicas, new=req.replicas,
        what=f"pool {req.pool}",
    )  # fmt: skip
    lock = _guarded(req, job, lambda: _capacity(req, capacity, req.node_pools, req.read_quota))
    return req, lock, state.replicas


def _run_scale(held: tuple[ScalePool, SwitchLock, int], job: Job) -> str:
    req, lock, before = held
    try:
        fleet_scaling.scale_pool(req.cluster, req.namespace, req.pool, req.replicas)
        job.progress(f"Pool {req.pool}: {before} -> {req.replicas} replica(s).")
        if req.replicas == 0:
            job.progress(f"Pool {req.pool} is asleep; the chat wakes it when asked.")
            return "done"
        return _wait_ready(req, job, lock, req.replicas, req.poll_s)
    finally:
        lock.release()


POOL_SCALE: JobDefinition[ScalePool, tuple[ScalePool, SwitchLock, int], str] = JobDefinition(
    kind="pool", target=lambda r: f"{r.namespace}/{r.pool}",
    details=lambda r: {"pool": r.pool, "replicas": r.replicas},
    begin=_begin_scale, run=_run_scale, audit_start="pool.scale", audit_result="pool.scale",
    started=lambda held: {"replicas_before": held[2]},
    outcome=lambda res: (res, {}), busy=pool_busy, audit_cancel="pool.scale",
    cancel_note="{actor} stopped following the replicas; the new count stays.",
)  # fmt: skip


def _begin_autoscale(req: AutoscalePool, job: Job) -> tuple[AutoscalePool, SwitchLock]:
    fleet_scaling.check_autoscaling(req.min_replicas, req.max_replicas, req.target_waiting,
                                    project=req.project)  # fmt: skip
    _state(req)
    return req, _lock(req, job)


def _run_autoscale(held: tuple[AutoscalePool, SwitchLock], job: Job) -> str:
    req, lock = held
    try:
        fleet_scaling.set_autoscaling(req.cluster, req.namespace, req.pool, req.min_replicas,
                                      req.max_replicas, req.target_waiting,
                                      project=req.project)  # fmt: skip
        zero = " (scale to zero)" if req.min_replicas == 0 else ""
        job.progress(f"Pool {req.pool} autoscales from {req.min_replicas}{zero} to "
                     f"{req.max_replicas} replicas at {req.target_waiting:g} waiting.")  # fmt: skip
        return "done"
    finally:
        lock.release()


POOL_AUTOSCALE: JobDefinition[AutoscalePool, tuple[AutoscalePool, SwitchLock], str] = JobDefinition(
    kind="pool", target=lambda r: f"{r.namespace}/{r.pool}",
    details=lambda r: {"pool": r.pool, "min_replicas": r.min_replicas,
                       "max_replicas": r.max_replicas, "target_waiting": r.target_waiting},
    begin=_begin_autoscale, run=_run_autoscale,
    audit_start="pool.autoscale", audit_result="pool.autoscale",
    outcome=lambda res: (res, {}), busy=pool_busy,
)  # fmt: skip
