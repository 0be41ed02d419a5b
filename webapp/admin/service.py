"""What the admin page does, without Streamlit: plan a deploy, run jobs, read the status.

* Planning (``plan_deploy``, ``strategy_options``, ``require_placement``) lives in
  ``webapp.admin.plan`` and is re-exported here.
* ``JobRegistry`` runs a model switch or a node-pool change in a background thread
  that outlives page reruns (the page keeps one registry per process) and exposes its
  progress as immutable ``JobView`` snapshots. Starting a job does the first step
  synchronously, so refusals (another switch holds the lock, RBAC forbids, GKE is busy,
  the pool can never schedule the model) reach the caller as typed errors at once. Every start, refusal, cancel and result is
  written to the audit log.
* ``read_status`` gathers pods, GPU nodes and node pools for the status tables;
  ``log_pod`` picks the pod whose log the page offers first.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Literal

from webapp.admin.audit import AuditError, AuditLog

# planning lives in admin_plan; re-exported (``name as name``) for the page and the tests
from webapp.admin.plan import DeployPlan as DeployPlan
from webapp.admin.plan import plan_deploy as plan_deploy
from webapp.admin.plan import require_placement
from webapp.admin.plan import strategy_options as strategy_options
from webapp.admin.serving import Serving, serving
from webapp.cluster import model_spec as mf
from webapp.cluster.errors import ClusterError, SwitchInProgress
from webapp.cluster.inventory import Inventory, PodInfo, inventory
from webapp.cluster.k8s import Cluster
from webapp.cluster.node_pools import (
    NodePoolError,
    NodePoolInfo,
    NodePools,
    OperationInfo,
    with_node_counts,
)
from webapp.cluster.rollout import UNSCHEDULABLE_GRACE_S, RolloutSnapshot
from webapp.cluster.switch import SwitchOptions, SwitchResult, SwitchStep, switch_model
from webapp.llm.errors import LLMError
from webapp.llm.server import list_models

log = logging.getLogger(__name__)

#: Poll the rollout every second: 5 cheap API reads per second during a switch only.
SWITCH_OPTIONS = SwitchOptions(poll_s=1.0)


class AdminError(Exception):
    """Base of the errors this module raises itself (others come from cluster/node_pools)."""


class JobBusy(AdminError):
    """A node-pool change started from this console is still running."""

    def __init__(self, kind: str, actor: str, target: str) -> None:
        self.kind, self.actor, self.target = kind, actor, target
        super().__init__(f"{actor} is already changing {target}; wait until it finishes.")


# ---------------------------------------------------------------- status


@dataclass(frozen=True)
class Status:
    """One refresh of the status tables; an error replaces the part it broke."""

    inventory: Inventory | None
    cluster_error: ClusterError | None
    pools: tuple[NodePoolInfo, ...] | None
    pools_error: NodePoolError | None
    listed_models: tuple[str, ...] | None = None  # /v1/models at the chat endpoint; None: no answer

    def serving(self, namespace: str) -> Serving:
        """The headline: what is served, on what, since when (``webapp.admin.serving``)."""
        pods = self.inventory.pods if self.inventory is not None else None
        return serving(pods, self.listed_models, namespace=namespace)


def _listed_models(llm_url: str | None, api_key: str | None) -> tuple[str, ...] | None:
    if not llm_url:
        return None
    try:
        return tuple(m.id for m in list_models(llm_url, api_key, timeout=2.0))
    except LLMError:
        return None


def read_status(
    cluster: Cluster | None,
    namespace: str,
    pools: NodePools | None,
    *,
    llm_url: str | None = None,
    api_key: str | None = None,
) -> Status:
    """Pods, GPU nodes and events (3 Kubernetes calls), node pools (1 GKE call) and, given
    ``llm_url``, the models the chat endpoint lists (1 HTTP call, 2 s at most).

    Either client may be None (not configured): that part is then simply absent.
    """
    inv, cerr = None, None
    try:
        inv = inventory(cluster, namespace) if cluster is not None else None
    except ClusterError as exc:
        cerr = exc
    infos, perr = None, None
    if pools is not None:
        try:
            listed = pools.list_node_pools()
            # live node counts (GPU and CPU pools) from Kubernetes; unknown without a cluster
            infos = tuple(with_node_counts(listed, inv.pool_node_counts) if inv else listed)
        except NodePoolError as exc:
            perr = exc
    return Status(inv, cerr, infos, perr, _listed_models(llm_url, api_key))


def log_pod(pods: Sequence[PodInfo]) -> str | None:
    """The pod whose log the page offers first: the newest pod serving a model (so the choice
    follows a model switch to the new vLLM pod), else the first pod; None without pods."""
    serving = [p for p in pods if p.model]
    if serving:
        return min(serving, key=lambda p: p.age_s).name
    return pods[0].name if pods else None


# ---------------------------------------------------------------- background jobs

JobKind = Literal["switch", "node_pool"]


@dataclass(frozen=True)
class JobView:
    """An immutable look at a job for the page."""

    id: int
    kind: JobKind
    actor: str
    target: str
    started_at: datetime
    running: bool
    messages: tuple[str, ...]
    snapshot: RolloutSnapshot | None = None
    failed_snapshot: RolloutSnapshot | None = None  # the rollout that failed, before rollback
    operation: OperationInfo | None = None
    result: SwitchResult | OperationInfo | None = None
    error: Exception | None = None
    cancel_requested: bool = False
    model_before: str | None = None  # a switch: the served model it replaces, once read
    model_after: str | None = None  # a switch: the model it deploys


@dataclass
class Job:
    """A running or finished job; the worker thread updates it under ``lock``."""

    id: int
    kind: JobKind
    actor: str
    target: str
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    cancel: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    thread: threading.Thread | None = None
    _view: JobView | None = None

    def __post_init__(self) -> None:
        self._view = JobView(self.id, self.kind, self.actor, self.target, self.started_at, True, ())

    def view(self) -> JobView:
        """The latest snapshot."""
        with self.lock:
            assert self._view is not None
            return replace(self._view, cancel_requested=self.cancel.is_set())

    def update(self, message: str | None = None, **changes: Any) -> None:
        """Append a progress message and/or replace fields of the view."""
        with self.lock:
            assert self._view is not None
            if message and (not self._view.messages or self._view.messages[-1] != message):
                changes["messages"] = (*self._view.messages, message)[-200:]
            self._view = replace(self._view, **changes)

    @property
    def running(self) -> bool:
        return self.view().running

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the worker thread; True if it has finished."""
        if self.thread is not None:
            self.thread.join(timeout)
        return not self.running


def record(audit: AuditLog | None, actor: str, action: str, target: str, result: str, **details):
    """Write an audit entry; an unavailable audit database never stops an admin action."""
    if audit is None:
        return
    try:
        audit.record(actor, action, target, result, details)
    except (AuditError, ValueError) as exc:
        log.warning("audit entry %s/%s not written: %s", action, result, type(exc).__name__)


class JobRegistry:
    """The jobs of this process: at most one switch and one node-pool change at a time.

    Across processes, the switch Lease (``SwitchInProgress``) and GKE's one-operation
    rule (``OperationInProgress``) keep things safe; this registry only remembers the
    latest job of each kind so a reloaded page finds it again. Its switches wait
    ``unschedulable_grace_s`` for a node before rolling back (``SwitchOptions``).
    """

    def __init__(self, *, unschedulable_grace_s: float = UNSCHEDULABLE_GRACE_S) -> None:
        self.switch_options = replace(SWITCH_OPTIONS, unschedulable_grace_s=unschedulable_grace_s)
        self._lock = threading.Lock()
        self._jobs: dict[str, Job] = {}
        self._previous: dict[str, Job | None] = {}
        self._ids = iter(range(1, 1 << 62))

    def current(self, kind: JobKind) -> Job | None:
        """The latest job of ``kind`` (running or finished), if any."""
        with self._lock:
            return self._jobs.get(kind)

    def _claim(self, kind: JobKind, actor: str, target: str) -> Job:
        with self._lock:
            old = self._jobs.get(kind)
            if old is not None and old.running:
                if kind == "switch":
                    raise SwitchInProgress(old.actor, old.started_at.isoformat(timespec="seconds"))
                raise JobBusy(kind, old.actor, old.target)
            job = Job(next(self._ids), kind, actor, target)
            self._jobs[kind] = job
            self._previous[kind] = old
            return job

    def _release(self, job: Job) -> None:
        """Forget a job that was refused before it started; the previous one shows again."""
        job.update(running=False)
        with self._lock:
            if self._jobs.get(job.kind) is job:
                old = self._previous.pop(job.kind, None)
                if old is None:
                    del self._jobs[job.kind]
                else:
                    self._jobs[job.kind] = old

    # --- model switch ---

    def start_switch(
        self,
        cluster: Cluster,
        spec: mf.ModelSpec,
        *,
        admin: str,
        namespace: str,
        deployment: str,
        service: str,
        strategy: str = "in_place",
        model_probe: Callable[[str], list[str]] | None = None,
        audit: AuditLog | None = None,
        options: SwitchOptions | None = None,  # default: the registry's
        pools: NodePools | None = None,
    ) -> Job:
        """Take the switch lock and start ``switch_model`` in a thread; return its Job.

        Raises ``SwitchInProgress`` (naming the holder), ``Forbidden``, ``InvalidModelSpec``,
        ``StrategyNotAllowed``, ``PoolCannotSchedule`` (checked with the lock held, from the
        GPU nodes and, given ``pools``, GKE's node pools), ``NotFound``, ``ClusterUnavailable``
        before anything changes.
        """
        target = f"{namespace}/{deployment}"
        details = {"model": spec.name, "hf_repo": spec.hf_repo, "strategy": strategy}
        try:
            job = self._claim("switch", admin, target)
        except SwitchInProgress as exc:
            record(audit, admin, "switch.start", target, "refused", reason=str(exc), **details)
            raise
        job.update(model_after=spec.name)
        gen = switch_model(
            cluster,
            spec,
            admin=admin,
            namespace=namespace,
            deployment=deployment,
            service=service,
            strategy=strategy,  # type: ignore[arg-type]
            model_probe=model_probe,
            cancel=job.cancel,
            options=options or self.switch_options,
        )
        try:
            first = next(gen)  # validation + lock: refusals surface here
            in_place = strategy != "blue_green"
            require_placement(cluster, namespace, spec, pools, in_place=in_place)
        except Exception as exc:
            gen.close()  # releases the Lease if it was taken
            self._release(job)
            result = "refused" if isinstance(exc, ClusterError) else "error"
            record(audit, admin, "switch.start", target, result, reason=str(exc), **details)
            raise
        record(audit, admin, "switch.start", target, "started", **details)
        self._absorb(job, first)
        job.thread = threading.Thread(
            target=self._run_switch, args=(job, gen, audit, details), daemon=True,
            name=f"switch-{job.id}",
        )  # fmt: skip
        job.thread.start()
        return job

    @staticmethod
    def _absorb(job: Job, item: SwitchStep | SwitchResult) -> None:
        if isinstance(item, SwitchResult):
            job.update(item.message, result=item, model_before=item.model_before)
        else:
            changes: dict[str, Any] = {}
            if item.model_before is not None:
                changes["model_before"] = item.model_before
            if item.snapshot is not None:
                changes["snapshot"] = item.snapshot
                if item.snapshot.state == "failed" and item.stage == "rollout":
                    changes["failed_snapshot"] = item.snapshot
            job.update(item.message, **changes)

    def _run_switch(self, job: Job, gen: Iterator, audit: AuditLog | None, details: dict) -> None:
        try:
            for item in gen:
                self._absorb(job, item)
            res = job.view().result
            if isinstance(res, SwitchResult):
                record(
                    audit, job.actor, "switch.result", job.target, res.outcome,
                    message=res.message, failure=res.failure, cancelled=res.cancelled,
                    model_before=res.model_before, model_after=res.model_after, **details,
                )  # fmt: skip
        except Exception as exc:  # noqa: BLE001 - shown on the page, never a traceback
            job.update(str(exc) or type(exc).__name__, error=exc)
            record(
                audit, job.actor, "switch.result", job.target, "error", reason=str(exc), **details
            )
        finally:
            gen.close()  # releases the Lease if the generator stopped early
            job.update(running=False)

    def cancel_switch(self, actor: str, audit: AuditLog | None = None) -> bool:
        """Ask the running switch to stop and roll back; False if none is running."""
        job = self.current("switch")
        if job is None or not job.running:
            return False
        job.cancel.set()
        job.update(f"Cancel requested by {actor}; rolling back.")
        record(audit, actor, "switch.cancel", job.target, "requested", started_by=job.actor)
        return True

    # --- node pools ---

    def start_node_pool_change(
        self,
        pools: NodePools,
        pool: str,
        *,
        admin: str,
        size: int | None = None,
        autoscaling: tuple[int, int] | None = None,
        audit: AuditLog | None = None,
    ) -> Job:
        """Start a resize (``size``) or an autoscaling change (``autoscaling=(min, max)``).

        The GKE request is sent at once (``OperationInProgress``, ``GkeForbidden``,
        ``InvalidNodePoolRequest`` are raised here); a thread follows the operation to DONE.
        """
        if (size is None) == (autoscaling is None):
            raise ValueError("give exactly one of size or autoscaling")
        if size is not None:
            action, details = "nodepool.resize", {"node_count": size}
        else:
            assert autoscaling is not None
            action = "nodepool.autoscaling"
            details = {"min_nodes": autoscaling[0], "max_nodes": autoscaling[1]}
        try:
            job = self._claim("node_pool", admin, pool)
        except JobBusy as exc:
            record(audit, admin, action, pool, "refused", reason=str(exc), **details)
            raise
        try:
            if size is not None:
                op = pools.set_node_pool_size(pool, size)
                what = f"Resizing {pool} to {size} node(s)"
            else:
                op = pools.set_node_pool_autoscaling(pool, *autoscaling)  # type: ignore[misc]
                what = f"Setting autoscaling of {pool} to {autoscaling[0]}..{autoscaling[1]}"  # type: ignore[index]
        except Exception as exc:
            self._release(job)
            result = "refused" if isinstance(exc, NodePoolError) else "error"
            record(audit, admin, action, pool, result, reason=str(exc), **details)
            raise
        record(audit, admin, action, pool, "started", operation=op.name, **details)
        job.update(f"{what} (GKE operation {op.name}).", operation=op)

        def progress(o: OperationInfo) -> None:
            job.update(f"Operation {o.name}: {o.status}", operation=o)

        def run() -> None:
            try:
                done = pools.wait(op, progress)
                job.update(f"{what}: done.", result=done)
                record(audit, admin, action, pool, "done", operation=op.name, **details)
            except Exception as exc:  # noqa: BLE001 - shown on the page
                job.update(str(exc), error=exc)
                record(audit, admin, action, pool, "failed", reason=str(exc), **details)
            finally:
                job.update(running=False)

        job.thread = threading.Thread(target=run, daemon=True, name=f"nodepool-{job.id}")
        job.thread.start()
        return job
