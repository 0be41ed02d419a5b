"""One way to start, watch, cancel and audit a long admin action (issue 11.3).

A ``JobDefinition`` says what an action is: its ``kind`` (one running job of each kind per
process), how a second start is refused while one runs (``busy``: ``JobBusy`` by default;
the model switch names the holder of its Lease), the two functions that run it, what the
audit log records, and whether it can be cancelled. ``webapp.admin.actions`` holds the
definitions of the console's actions; a new action is one more definition there.

``JobRegistry.start(definition, params, actor=..., audit=...)`` runs ``begin`` at once, in
the caller's thread, so refusals (a lock held, RBAC forbids, GKE busy, bad input) reach
the caller as typed errors before anything runs in the background; then ``run`` goes on
in a thread that outlives page reruns (the page keeps one registry per process). Both
report progress through the ``Job`` they are given (``job.progress(message, detail=...)``)
and read ``job.cancel`` to stop early. The page watches immutable ``JobView`` snapshots.

What is audited, as ``(action, result)``: a refusal ``(audit_start, "refused")`` (a typed
error) or ``(audit_start, "error")``; the start ``(audit_start, "started")``; the end
``(audit_result, outcome(result))`` or ``(audit_result, failed)``; a cancel
``(audit_cancel, "requested")``. An unavailable audit database never stops an action.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

from webapp.admin.audit import AuditError, AuditLog
from webapp.admin.errors import AdminError, JobBusy, NotCancellable
from webapp.cluster.errors import ClusterError, NodePoolError

log = logging.getLogger(__name__)

P = TypeVar("P")  # what the caller asks for (the action's parameters)
S = TypeVar("S")  # what ``begin`` hands to ``run``
R = TypeVar("R")  # what ``run`` returns: the view's ``result``

#: Typed errors that make a failed start a refusal (audited "refused"), not an "error".
REFUSALS: tuple[type[Exception], ...] = (ClusterError, NodePoolError, AdminError)
_KEEP: Any = object()


@dataclass(frozen=True)
class JobView:
    """An immutable look at a job for the page; ``detail`` is the action's own progress
    record (e.g. the rollout snapshot of a switch), ``result`` what ``run`` returned."""

    id: int
    kind: str
    actor: str
    target: str
    started_at: datetime
    running: bool
    messages: tuple[str, ...]
    detail: Any = None
    result: Any = None
    error: Exception | None = None
    cancel_requested: bool = False


def _job_busy(view: JobView) -> Exception:
    return JobBusy(view.kind, view.actor, view.target)


def _no_details(_: Any) -> dict[str, Any]:
    return {}


@dataclass(frozen=True)
class JobDefinition(Generic[P, S, R]):
    """What a long admin action is; see the module docstring for the life of a job."""

    kind: str
    target: Callable[[P], str]  # what it changes, e.g. "vllm/vllm" or "gpu-pool"
    begin: Callable[[P, Job], S]  # at once, in the caller's thread: refusals raise here
    run: Callable[[S, Job], R]  # in the background, until done
    audit_start: str  # e.g. "switch.start"
    audit_result: str  # e.g. "switch.result"
    outcome: Callable[[R], tuple[str, Mapping[str, Any]]]  # audit result and details of an end
    details: Callable[[P], Mapping[str, Any]] = _no_details  # audited with every entry
    started: Callable[[S], Mapping[str, Any]] = _no_details  # more details for "started"
    failed: str = "failed"  # the audit result when ``run`` raises
    busy: Callable[[JobView], Exception] = _job_busy  # the refusal while one runs
    audit_cancel: str | None = None  # None: the action cannot be cancelled
    cancel_note: str = "Cancel requested by {actor}."  # the progress line of a cancel
    initial_detail: Callable[[P], Any] = lambda _: None  # noqa: E731 - the view's first detail


@dataclass
class Job:
    """A running or finished job; its functions update it, the page reads ``view()``."""

    id: int
    kind: str
    actor: str
    target: str
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    cancel: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _view: JobView | None = None

    def __post_init__(self) -> None:
        self._view = JobView(self.id, self.kind, self.actor, self.target, self.started_at, True, ())

    def view(self) -> JobView:
        """The latest snapshot."""
        with self._lock:
            assert self._view is not None
            return replace(self._view, cancel_requested=self.cancel.is_set())

    def progress(self, message: str | None = None, *, detail: Any = _KEEP) -> None:
        """Append a progress line (a repeat of the last one is dropped) and/or replace the
        action's ``detail``."""
        changes: dict[str, Any] = {} if detail is _KEEP else {"detail": detail}
        self._set(message, **changes)

    @property
    def detail(self) -> Any:
        return self.view().detail

    @property
    def running(self) -> bool:
        return self.view().running

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the worker thread; True if the job has finished."""
        if self.thread is not None:
            self.thread.join(timeout)
        return not self.running

    def _set(self, message: str | None = None, **changes: Any) -> None:
        with self._lock:
            assert self._view is not None
            if message and (not self._view.messages or self._view.messages[-1] != message):
                changes["messages"] = (*self._view.messages, message)[-200:]
            self._view = replace(self._view, **changes)


def record(audit: AuditLog | None, actor: str, action: str, target: str, result: str, **details):
    """Write an audit entry; an unavailable audit database never stops an admin action."""
    if audit is None:
        return
    try:
        audit.record(actor, action, target, result, details)
    except (AuditError, ValueError) as exc:
        log.warning("audit entry %s/%s not written: %s", action, result, type(exc).__name__)


class JobRegistry:
    """The jobs of this process: at most one running job of each kind.

    Across processes, what the actions take keeps things safe (the switch Lease, GKE's one
    operation per cluster); this registry remembers the latest job of each kind so that a
    reloaded page finds it again.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._jobs: dict[str, Job] = {}
        self._previous: dict[str, Job | None] = {}
        self._ids = iter(range(1, 1 << 62))

    def current(self, kind: str) -> Job | None:
        """The latest job of ``kind`` (running or finished), if any."""
        with self._lock:
            return self._jobs.get(kind)

    def start(
        self,
        definition: JobDefinition[P, S, R],
        params: P,
        *,
        actor: str,
        audit: AuditLog | None = None,
    ) -> Job:
        """Begin ``definition`` for ``params`` now and run the rest in a thread; the Job.

        Raises what ``busy`` gives while a job of this kind runs, and whatever ``begin``
        raises, before anything runs in the background; each refusal is audited."""
        target, details = definition.target(params), dict(definition.details(params))
        audit_start = definition.audit_start
        try:
            job = self._claim(definition, actor, target)
        except Exception as exc:
            record(audit, actor, audit_start, target, "refused", reason=str(exc), **details)
            raise
        job.progress(detail=definition.initial_detail(params))
        try:
            state = definition.begin(params, job)
        except Exception as exc:
            self._release(job)
            result = "refused" if isinstance(exc, REFUSALS) else "error"
            record(audit, actor, audit_start, target, result, reason=str(exc), **details)
            raise
        record(audit, actor, audit_start, target, "started", **definition.started(state), **details)
        job.thread = threading.Thread(
            target=self._run, args=(definition, job, state, audit, details), daemon=True,
            name=f"{definition.kind}-{job.id}",
        )  # fmt: skip
        job.thread.start()
        return job

    def cancel(self, definition: JobDefinition, actor: str, audit: AuditLog | None = None) -> bool:
        """Ask the running job of this kind to stop; False if none is running.

        Raises ``NotCancellable`` for an action that cannot stop early."""
        if definition.audit_cancel is None:
            raise NotCancellable(definition.kind)
        job = self.current(definition.kind)
        if job is None or not job.running:
            return False
        job.cancel.set()
        job.progress(definition.cancel_note.format(actor=actor))
        record(audit, actor, definition.audit_cancel, job.target, "requested", started_by=job.actor)
        return True

    @staticmethod
    def _run(definition: JobDefinition, job: Job, state: Any, audit, details: dict) -> None:
        action, actor, target = definition.audit_result, job.actor, job.target
        try:
            result = definition.run(state, job)
            job._set(result=result)
            outcome, more = definition.outcome(result)
            record(audit, actor, action, target, outcome, **more, **details)
        except Exception as exc:  # noqa: BLE001 - shown on the page, never a traceback
            job._set(str(exc) or type(exc).__name__, error=exc)
            record(audit, actor, action, target, definition.failed, reason=str(exc), **details)
        finally:
            job._set(running=False)

    def _claim(self, definition: JobDefinition, actor: str, target: str) -> Job:
        with self._lock:
            old = self._jobs.get(definition.kind)
            if old is not None and old.running:
                raise definition.busy(old.view())
            job = Job(next(self._ids), definition.kind, actor, target)
            self._jobs[definition.kind] = job
            self._previous[definition.kind] = old
            return job

    def _release(self, job: Job) -> None:
        """Forget a job that was refused before it started; the previous one shows again."""
        job._set(running=False)
        with self._lock:
            if self._jobs.get(job.kind) is job:
                old = self._previous.pop(job.kind, None)
                if old is None:
                    del self._jobs[job.kind]
                else:
                    self._jobs[job.kind] = old
