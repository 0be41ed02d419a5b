"""The console's long admin actions, each one ``JobDefinition`` (``webapp.admin.jobs``).

* ``SWITCH`` — deploy another model on the GPU pool (``cluster.switch.switch_model``):
  ``begin`` validates, takes the switch Lease and checks that the pool can ever schedule
  the model (blue/green, given a quota reader: and that the node it may need is within the
  region's GPU quota, ``admin.capacity``), so every refusal comes before anything changes;
  ``run`` follows the rollout
  (and the rollback) to the end. Cancel rolls back.
* ``NODE_POOL_RESIZE`` / ``NODE_POOL_AUTOSCALING`` — change the GPU pool (GKE): ``begin``
  sends the request (GKE refuses a second operation at once), ``run`` follows it to DONE.
  They share one slot (``kind``): one node-pool change at a time from this console.

A new action: a cluster call, one definition here, one UI section (README "Layout").
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

from webapp.admin.capacity import CapacityRequest, require_capacity
from webapp.admin.jobs import Job, JobDefinition, JobView
from webapp.admin.load_tracking import OUTCOME, LoadTracker
from webapp.admin.loading import LoadView
from webapp.admin.plan import require_placement
from webapp.cluster import manifests as mf
from webapp.cluster.errors import SwitchInProgress
from webapp.cluster.k8s import Cluster
from webapp.cluster.node_pools import NodePools, OperationInfo
from webapp.cluster.quota import RegionQuotas
from webapp.cluster.rollout import UNSCHEDULABLE_GRACE_S, RolloutSnapshot
from webapp.cluster.switch import SwitchOptions, SwitchResult, SwitchStep, switch_model
from webapp.llm.server import BackendState, health, list_models
from webapp.store import ConversationStore

# ---------------------------------------------------------------- model switch


def switch_options(unschedulable_grace_s: float = UNSCHEDULABLE_GRACE_S) -> SwitchOptions:
    """The page's switch tuning: poll the rollout every second (5 cheap API reads per
    second, during a switch only); wait ``unschedulable_grace_s`` for a node, then roll back."""
    return SwitchOptions(poll_s=1.0, unschedulable_grace_s=unschedulable_grace_s)


@dataclass(frozen=True)
class SwitchRequest:
    """What the admin asked for: serve ``spec`` on ``deployment``, switching ``strategy``.

    ``pools`` (GKE, optional) lets the placement check see the pool's maximum size;
    ``read_quota`` (optional, e.g. ``partial(cluster.quota.gpu_quotas, settings)``) lets a
    blue/green switch, which adds a pod beside the running one, check the GPU quota too;
    ``store`` (optional) keeps the loads: the prediction, the load the chat page shows."""

    cluster: Cluster
    spec: mf.ModelSpec
    namespace: str
    deployment: str
    service: str
    strategy: str = "in_place"
    model_probe: Callable[[str], list[str]] | None = None
    options: SwitchOptions = field(default_factory=switch_options)
    pools: NodePools | None = None
    store: ConversationStore | None = None
    read_quota: Callable[[], RegionQuotas] | None = None


@dataclass(frozen=True)
class SwitchDetail:
    """The switch's progress beside its messages: the models and the rollout's last look."""

    model_after: str
    model_before: str | None = None  # the served model it replaces, once read
    snapshot: RolloutSnapshot | None = None
    failed_snapshot: RolloutSnapshot | None = None  # the rollout that failed, before rollback
    load: LoadView | None = None  # the new model's load, phase by phase


def switch_probe(
    strategy: str, llm_url: str, api_key: str | None
) -> Callable[[str], list[str]] | None:
    """How the switch confirms the new model answers: blue/green asks the new pod; in place,
    when the chat endpoint is up now, asks it (the Service then reaches only the new pod)."""
    if strategy == "blue_green":
        return lambda url: [m.id for m in list_models(url, api_key)]
    if health(llm_url, api_key).state is BackendState.HEALTHY:
        return lambda _url: [m.id for m in list_models(llm_url, api_key)]
    return None


def _absorb(job: Job, item: SwitchStep | SwitchResult, loads: LoadTracker) -> SwitchResult | None:
    """Show one item of ``switch_model`` on the job; the result, if it is the last. The new
    model's rollout also updates its load (``loads``)."""
    detail: SwitchDetail = job.detail
    if isinstance(item, SwitchResult):
        job.progress(item.message, detail=replace(detail, model_before=item.model_before))
        return item
    changes: dict[str, Any] = {}
    if item.model_before is not None:
        changes["model_before"] = item.model_before
    if item.snapshot is not None:
        changes["snapshot"] = item.snapshot
        if item.snapshot.state == "failed" and item.stage == "rollout":
            changes["failed_snapshot"] = item.snapshot
        if item.stage == "rollout":
            changes |= _load_changes(item.snapshot, loads)
    job.progress(item.message, detail=replace(detail, **changes))
    return None


def _load_changes(snap: RolloutSnapshot, loads: LoadTracker) -> dict[str, Any]:
    changes = {} if snap.load is None else {"load": loads.look(snap.load)}
    if snap.terminal:
        loads.finish(OUTCOME[snap.state])
    return changes


_Switching = tuple[Iterator[SwitchStep | SwitchResult], SwitchResult | None, LoadTracker]


def _begin_switch(req: SwitchRequest, job: Job) -> _Switching:
    steps = switch_model(
        req.cluster, req.spec, admin=job.actor, namespace=req.namespace,
        deployment=req.deployment, service=req.service, strategy=req.strategy,  # type: ignore[arg-type]
        model_probe=req.model_probe, cancel=job.cancel, options=req.options,
    )  # fmt: skip
    try:
        first = next(steps)  # validation + lock: refusals surface here
        in_place = req.strategy != "blue_green"
        require_placement(req.cluster, req.namespace, req.spec, req.pools, in_place=in_place)
        if not in_place and req.read_quota is not None:  # one replica more, beside the old
            added = CapacityRequest(
                req.spec.gpu_type, req.spec.tensor_parallel_size, 1, req.spec.name
            )
            require_capacity(req.cluster, req.namespace, added, req.pools, req.read_quota)
    except BaseException:
        steps.close()  # releases the Lease if it was taken
        raise
    loads = LoadTracker(req.store, req.spec.name)
    return steps, _absorb(job, first, loads), loads


def _run_switch(state: _Switching, job: Job) -> SwitchResult:
    steps, result, loads = state
    try:
        for item in steps:
            result = _absorb(job, item, loads) or result
    finally:
        steps.close()  # releases the Lease if the switch stopped early
        loads.finish("cancelled" if job.cancel.is_set() else "failed")  # if it did not end
    if result is None:
        raise RuntimeError("the switch ended without a result")
    return result


def _switch_outcome(res: SwitchResult) -> tuple[str, dict[str, Any]]:
    return res.outcome, {
        "message": res.message, "failure": res.failure, "cancelled": res.cancelled,
        "model_before": res.model_before, "model_after": res.model_after,
    }  # fmt: skip


def _switch_busy(view: JobView) -> Exception:
    return SwitchInProgress(view.actor, view.started_at.isoformat(timespec="seconds"))


SWITCH: JobDefinition[SwitchRequest, _Switching, SwitchResult] = JobDefinition(
    kind="switch",
    target=lambda r: f"{r.namespace}/{r.deployment}",
    details=lambda r: {"model": r.spec.name, "hf_repo": r.spec.hf_repo, "strategy": r.strategy},
    initial_detail=lambda r: SwitchDetail(model_after=r.spec.name),
    begin=_begin_switch,
    run=_run_switch,
    audit_start="switch.start",
    audit_result="switch.result",
    outcome=_switch_outcome,
    failed="error",
    busy=_switch_busy,  # the same refusal as another console's Lease: names the holder
    audit_cancel="switch.cancel",
    cancel_note="Cancel requested by {actor}; rolling back.",
)


# ---------------------------------------------------------------- node pools


@dataclass(frozen=True)
class ResizeRequest:
    """Resize GKE node pool ``pool`` to ``size`` nodes (0: scale to zero)."""

    pools: NodePools
    pool: str
    size: int

    def send(self) -> OperationInfo:
        return self.pools.set_node_pool_size(self.pool, self.size)

    def describe(self) -> str:
        return f"Resizing {self.pool} to {self.size} node(s)"


@dataclass(frozen=True)
class AutoscalingRequest:
    """Let GKE keep node pool ``pool`` between ``min_nodes`` and ``max_nodes``."""

    pools: NodePools
    pool: str
    min_nodes: int
    max_nodes: int

    def send(self) -> OperationInfo:
        return self.pools.set_node_pool_autoscaling(self.pool, self.min_nodes, self.max_nodes)

    def describe(self) -> str:
        return f"Setting autoscaling of {self.pool} to {self.min_nodes}..{self.max_nodes}"


PoolChange = ResizeRequest | AutoscalingRequest


def _send(req: PoolChange, job: Job) -> tuple[PoolChange, OperationInfo]:
    op = req.send()
    job.progress(f"{req.describe()} (GKE operation {op.name}).", detail=op)
    return req, op


def _follow(state: tuple[PoolChange, OperationInfo], job: Job) -> OperationInfo:
    req, op = state
    done = req.pools.wait(op, lambda o: job.progress(f"Operation {o.name}: {o.status}", detail=o))
    job.progress(f"{req.describe()}: done.")
    return done


def _pool_change(action: str, details: Callable[[Any], dict[str, Any]]) -> JobDefinition:
    return JobDefinition(
        kind="node_pool",
        target=lambda r: r.pool,
        details=details,
        begin=_send,
        run=_follow,
        audit_start=action,
        audit_result=action,
        started=lambda state: {"operation": state[1].name},
        outcome=lambda done: ("done", {"operation": done.name}),
    )


NODE_POOL_RESIZE = _pool_change("nodepool.resize", lambda r: {"node_count": r.size})
NODE_POOL_AUTOSCALING = _pool_change(
    "nodepool.autoscaling", lambda r: {"min_nodes": r.min_nodes, "max_nodes": r.max_nodes}
)
