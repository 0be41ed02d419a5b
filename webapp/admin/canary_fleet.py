"""A canary on the fleet (issue 14): switch pool P's model by traffic share, ``FLEET_CANARY``.

What it writes, in order (all through ``webapp.cluster.fleet``, P's Lease held throughout):

1. a second pool ``P-canary`` (``canary_pool_name``) — a copy of P's Deployment, picker and
   policies with what changes (``canary_change``: the new model's weights, ``--model``, and/or
   another vLLM image — its version — and/or ``--max-model-len``, ``--stream-interval``,
   ``--gpu-memory-utilization``) under P's served model name, P's replicas
   (``create_pool(..., base=P, canary=True, overrides=...)``) — put in P's model rule at
   weight 0; the capacity guard and every check run before it;
2. once its replicas are ready, the canary's share step by step (5 → 25 → 50 → 100 %, the
   HTTPRoute backend weights, ``set_split``), each step judged on both pools' vLLM /metrics
   read from their ready pods through the API server's pod proxy (``canary_runner``);
3. promoted: the canary alone in the rule, then P removed — the pool named ``P-canary`` keeps
   serving the model name (the next canary of it is named ``P`` again); rolled back (a bad
   step, replicas that never get ready, a cancel, an error): P alone at 100 %, the canary
   pool removed.

Clients keep sending the same model name throughout: the canary serves it (vLLM's
``--served-model-name``), so no request fails at the switch. Audited as ``canary.start`` /
``canary.result`` / ``canary.cancel`` (``webapp.admin.jobs``).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from webapp.admin.canary import CanaryPlan, validate_plan
from webapp.admin.canary_change import CanaryChange, WantedChange, catalog_entry, resolve_change
from webapp.admin.canary_job import CANARY, CanaryDetail, CanaryRequest, canary_split
from webapp.admin.canary_runner import CanaryResult, Texts
from webapp.admin.capacity import CapacityRequest, require_capacity
from webapp.admin.catalog import Catalog
from webapp.admin.errors import InvalidCanaryPlan
from webapp.admin.jobs import Job, JobDefinition
from webapp.cluster import fleet
from webapp.cluster import fleet_objects as fo
from webapp.cluster.errors import ClusterError, FleetError, PoolNotFound
from webapp.cluster.fleet_objects import PoolState
from webapp.cluster.k8s import Cluster
from webapp.cluster.lock import SwitchLock, acquire_lock
from webapp.cluster.node_pools import NodePools
from webapp.cluster.pod_metrics import pool_metrics_text
from webapp.cluster.pools import Backend, PoolSpec, check_pool_name
from webapp.cluster.quota import RegionQuotas
from webapp.llm.metrics import MetricsUnavailable

log = logging.getLogger(__name__)

CANARY_SUFFIX = "-canary"
PoolMetrics = Callable[[Cluster, str, str], str]


def canary_pool_name(pool: str) -> str:
    """The canary of ``P`` is ``P-canary``; the canary of ``P-canary`` (a promoted canary) is
    ``P`` again, so names alternate instead of growing."""
    if pool.endswith(CANARY_SUFFIX) and len(pool) > len(CANARY_SUFFIX):
        return pool[: -len(CANARY_SUFFIX)]
    return pool + CANARY_SUFFIX


def default_pools(route: dict) -> set[str]:
    """The pools of the route's rule without a model (GET /v1/models, /health go there)."""
    rules = (route.get("spec") or {}).get("rules") or []
    return {b.pool for r in rules if fo.rule_model(r) is None for b in fo.rule_backends(r)}


def canary_candidates(cluster: Cluster, ns: str) -> list[PoolState]:
    """The pools a canary can switch now: deployed, awake, alone behind their model name,
    not the default pool (what the page offers; ``FLEET_CANARY`` checks again)."""
    default = default_pools(fleet.read_route(cluster, ns))
    return [
        p for p in fleet.list_pools(cluster, ns)
        if p.deployed and p.model and p.replicas > 0 and p.name not in default
        and [b.pool for b in p.backends] == [p.name]
    ]  # fmt: skip


@dataclass(frozen=True)
class FleetCanaryRequest:
    """Switch pool ``pool`` to catalog model ``model`` (None: keep its weights) and/or vLLM
    ``image`` (another version) and/or flag values, by ``plan`` (``canary_change``).

    ``node_pools``/``read_quota`` (GKE; optional) let the capacity guard see the node pools'
    maximum and the region's GPU quota (``capacity.require_capacity``).
    ``ready_timeout_s``: how long the canary's replicas may take to get ready (then it rolls
    back); ``metrics(cluster, ns, pool)`` a pool's /metrics text (default: its ready pods'
    through the pod proxy); ``sleep``/``clock``/``poll_s`` are for tests."""

    cluster: Cluster
    namespace: str
    pool: str
    model: str | None
    plan: CanaryPlan
    catalog: Catalog
    image: str | None = None
    max_model_len: int | None = None
    stream_interval: int | None = None
    gpu_memory_utilization: float | None = None
    node_pools: NodePools | None = None
    read_quota: Callable[[], RegionQuotas] | None = None
    ready_timeout_s: float = 900.0
    poll_s: float = 2.0
    metrics: PoolMetrics = field(default=pool_metrics_text, compare=False)
    sleep: Callable[[float], object] | None = field(default=None, compare=False)
    clock: Callable[[], float] = field(default=time.monotonic, compare=False)


@dataclass(frozen=True)
class FleetCanaryDetail(CanaryDetail):
    """``CanaryDetail`` plus the served model name, the new model, what changes (in words)
    and the phase: creating, loading, shifting, promoting, rolling_back, done."""

    served: str = ""
    new_model: str = ""
    changes: tuple[str, ...] = ()
    phase: str = "creating"
    ready: tuple[int, int] = (0, 0)  # the canary pool's replicas (ready, desired)
    shares: tuple[int, ...] = ()  # the plan's steps (% on the canary)


@dataclass(frozen=True)
class FleetCanaryResult:
    """How it ended: ``outcome`` promoted, rolled_back or cancelled; ``serving`` the pool
    that now serves the model name, ``removed`` the pool taken away."""

    outcome: str
    reason: str
    serving: str
    removed: str
    canary: CanaryResult


@dataclass
class _State:
    req: FleetCanaryRequest
    lock: SwitchLock
    served: str
    canary: str
    replicas: int
    change: CanaryChange


def _stable_pool(req: FleetCanaryRequest) -> PoolState:
    """Pool ``req.pool`` as listed, or a refusal saying why it cannot take a canary now."""
    pools = {p.name: p for p in fleet.list_pools(req.cluster, req.namespace)}
    stable = pools.get(req.pool)
    if stable is None or not stable.deployed or stable.model is None:
        raise PoolNotFound(req.pool)
    if [b.pool for b in stable.backends] != [req.pool]:
        others = ", ".join(b.pool for b in stable.backends if b.pool != req.pool)
        raise FleetError(f"Pool {req.pool!r} already shares the traffic of {stable.model!r} "
                         f"with {others}: finish or roll back that canary first.")  # fmt: skip
    if stable.replicas == 0:
        raise FleetError(f"Pool {req.pool!r} is asleep (0 replicas): wake it before a canary.")
    if req.pool in default_pools(fleet.read_route(req.cluster, req.namespace)):
        raise FleetError(
            f"Pool {req.pool!r} is the default pool (the model list and health checks go to "
            "it, and new pools are copied from it), so a canary could not remove it: switch "
            "its model in place, or run the canary on another pool."
        )
    if canary_pool_name(req.pool) in pools:
        raise FleetError(f"A pool named {canary_pool_name(req.pool)!r} already exists: "
                         "remove it before this canary.")  # fmt: skip
    return stable


def _require_capacity(req: FleetCanaryRequest, stable: PoolState) -> None:
    """The canary's replicas come on top of the stable pool's: refuse (``NotEnoughCapacity``,
    saying what to change) before anything is written when the GPUs cannot hold them."""
    if not stable.gpu_type or stable.gpus_per_replica < 1:
        return  # a pool without GPUs (CPU test installs): nothing to check
    what = f"the canary of pool {req.pool}"
    want = CapacityRequest(stable.gpu_type, stable.gpus_per_replica, stable.replicas, what)
    require_capacity(req.cluster, req.namespace, want, req.node_pools, req.read_quota)


def _begin(req: FleetCanaryRequest, job: Job) -> _State:
    if not isinstance(req.plan, CanaryPlan):
        raise InvalidCanaryPlan("plan", "The canary needs a plan: its steps and thresholds.")
    validate_plan(req.plan)
    check_pool_name(req.pool, "pool")
    canary = check_pool_name(canary_pool_name(req.pool), "pool")
    entry = catalog_entry(req.catalog, req.model)
    stable = _stable_pool(req)
    wanted = WantedChange(req.model, req.image, req.max_model_len, req.stream_interval,
                          req.gpu_memory_utilization)  # fmt: skip
    change = resolve_change(stable, req.catalog, entry, wanted)
    _require_capacity(req, stable)
    lock = acquire_lock(req.cluster, req.namespace, job.actor, pool=req.pool)
    assert stable.model is not None
    shares = " → ".join(f"{s}%" for s in req.plan.steps)
    job.progress(
        f"Canary of pool {req.pool}: {canary} will serve {stable.model} with "
        f"{'; '.join(change.changes)} and take {shares} of its traffic.",
        detail=replace(job.detail, stable=req.pool, canary=canary, served=stable.model,
                       changes=change.changes),
    )  # fmt: skip
    return _State(req, lock, stable.model, canary, stable.replicas, change)


# ---------------------------------------------------------------- run


def _phase(job: Job, phase: str, message: str | None = None, **changes: Any) -> None:
    job.progress(message, detail=replace(job.detail, phase=phase, **changes))


def _create(s: _State, job: Job) -> None:
    req = s.req
    spec = PoolSpec(s.canary, s.served, s.replicas, s.replicas, s.replicas)
    fleet.create_pool(
        req.cluster, req.namespace, spec, hf_repo=s.change.hf_repo,
        max_model_len=s.change.max_model_len, catalog_ids=[m.id for m in req.catalog.models],
        base=req.pool, canary=True, overrides=s.change.overrides,
    )  # fmt: skip


def _join(s: _State, job: Job) -> None:
    """The canary pool in P's model rule at 0 % (the gateway then knows it, sends nothing)."""
    req = s.req
    split = canary_split(s.served, req.pool, s.canary, 0)
    fleet.set_split(req.cluster, req.namespace, s.served, split)
    _phase(job, "loading", f"Created pool {s.canary} ({s.replicas} replicas) at 0% of "
           f"{s.served}'s traffic; waiting for its replicas to get ready.",
           ready=(0, s.replicas))  # fmt: skip


def _wait_ready(s: _State, job: Job) -> str | None:
    """None once every canary replica is ready; else why the canary stops before traffic."""
    req, clock = s.req, s.req.clock
    deadline, ready = clock() + req.ready_timeout_s, 0
    while not job.cancel.is_set():
        s.lock.renew()
        pool = next((p for p in fleet.list_pools(req.cluster, req.namespace)
                     if p.name == s.canary), None)  # fmt: skip
        ready = pool.ready if pool is not None else 0
        _phase(job, "loading", f"{s.canary}: {ready} of {s.replicas} replicas ready.",
               ready=(ready, s.replicas))  # fmt: skip
        if ready >= s.replicas:
            return None
        if clock() >= deadline:
            return (f"The canary pool's replicas did not get ready within "
                    f"{req.ready_timeout_s:g} s ({ready} of {s.replicas} ready): rolling back "
                    "before any traffic moved.")  # fmt: skip
        job.cancel.wait(req.poll_s)
    return "Cancelled by the admin before any traffic moved."


def _scrape(s: _State) -> Texts:
    req = s.req
    s.lock.renew()
    try:
        return (req.metrics(req.cluster, req.namespace, req.pool),
                req.metrics(req.cluster, req.namespace, s.canary))  # fmt: skip
    except ClusterError as exc:
        raise MetricsUnavailable(str(exc)) from None


def _shift(s: _State, job: Job) -> CanaryResult:
    """The canary's steps (``canary_job.CANARY``'s run: weights, signals, decisions)."""
    req = s.req

    def set_weights(share: int) -> None:
        s.lock.renew()
        split = canary_split(s.served, req.pool, s.canary, share)
        fleet.set_split(req.cluster, req.namespace, s.served, split)

    _phase(job, "shifting")
    steps = CanaryRequest(
        s.served, req.pool, s.canary, req.plan, set_weights=set_weights,
        scrape=lambda: _scrape(s), sleep=req.sleep, clock=req.clock,
    )  # fmt: skip
    return CANARY.run(steps, job)


def _promote(s: _State, job: Job) -> None:
    req = s.req
    _phase(job, "promoting", f"Promoting: {s.canary} alone serves {s.served}; removing the "
           f"old pool {req.pool}.")  # fmt: skip
    fleet.set_split(req.cluster, req.namespace, s.served, [Backend(s.canary, 100)])


def _roll_back(s: _State, job: Job | None = None) -> None:
    req = s.req
    if job is not None:
        _phase(job, "rolling_back", f"Rolling back: {req.pool} alone serves {s.served}; "
               f"removing the canary pool {s.canary}.")  # fmt: skip
    with contextlib.suppress(PoolNotFound):
        fleet.set_split(req.cluster, req.namespace, s.served, [Backend(req.pool, 100)])
    fleet.remove_pool(req.cluster, req.namespace, s.canary)


def _run(s: _State, job: Job) -> FleetCanaryResult:
    req, created, undo = s.req, False, True
    try:
        _create(s, job)
        created = True
        _join(s, job)
        why = _wait_ready(s, job)
        if why is None:
            result = _shift(s, job)
        else:
            outcome = "cancelled" if job.cancel.is_set() else "rolled_back"
            result = CanaryResult(outcome, why, (100, 0), 0)
            job.progress(why, detail=replace(job.detail, result=result))
        if result.promoted:
            _promote(s, job)
            undo = False  # the canary serves now: never send the traffic back to a half pool
            fleet.remove_pool(req.cluster, req.namespace, req.pool)
            serving, removed = s.canary, req.pool
        else:
            undo = False
            _roll_back(s, job)
            serving, removed = req.pool, s.canary
        _phase(job, "done", f"{serving} serves {s.served}; pool {removed} removed.")
        return FleetCanaryResult(result.outcome, result.reason, serving, removed, result)
    except BaseException:
        if created and undo:
            _undo(s)
        raise
    finally:
        s.lock.release()


def _undo(s: _State) -> None:
    """After an error: P alone at 100 %, the canary pool removed (best effort)."""
    try:
        _roll_back(s)
    except ClusterError as exc:
        log.warning("canary: could not remove the canary pool %s: %s", s.canary, exc)


def _outcome(res: FleetCanaryResult) -> tuple[str, dict[str, Any]]:
    return res.outcome, {"decision": res.reason, "serving": res.serving,
                         "removed": res.removed, "windows": res.canary.steps}  # fmt: skip


FLEET_CANARY: JobDefinition[FleetCanaryRequest, _State, FleetCanaryResult] = JobDefinition(
    kind="canary",
    target=lambda r: f"{r.namespace}/{r.pool}",
    details=lambda r: {
        "pool": r.pool,
        "model": r.model,
        "image": r.image,
        "max_model_len": r.max_model_len,
        "stream_interval": r.stream_interval,
        "gpu_memory_utilization": r.gpu_memory_utilization,
        "steps": list(r.plan.steps) if isinstance(r.plan, CanaryPlan) else None,
        "max_ttft_ratio": getattr(r.plan, "max_ttft_ratio", None),
        "max_error_rate_increase": getattr(r.plan, "max_error_rate_increase", None),
    },
    initial_detail=lambda r: FleetCanaryDetail(
        stable=r.pool,
        canary=canary_pool_name(r.pool),
        new_model=r.model or "",
        shares=tuple(r.plan.steps) if isinstance(r.plan, CanaryPlan) else (),
    ),  # fmt: skip
    begin=_begin,
    started=lambda s: {"changes": list(s.change.changes)},
    run=_run,
    audit_start="canary.start",
    audit_result="canary.result",
    outcome=_outcome,
    failed="error",
    audit_cancel="canary.cancel",
    cancel_note="Cancel requested by {actor}; sending all traffic back to the stable pool.",
)
