"""The canary as an admin job (``webapp.admin.jobs``): ``CANARY``.

``begin`` validates the plan and the pool names and changes nothing (the first weight is set
by ``run``), so a refusal leaves the traffic as it was. ``run`` drives
``canary_runner.run_canary`` and shows every judged window on the job (``CanaryDetail``: the
steps with their weights, signals and decisions). Cancel rolls back: all traffic returns to
the stable pool. Audited as ``canary.start`` / ``canary.result`` (outcome promoted,
rolled_back or cancelled, with the decision's words) and ``canary.cancel``.

The cluster effects come in with the request (``set_weights``, ``scrape``), so the canary is
tested without a cluster and wired to the fleet by two lambdas::

    set_weights=lambda share: fleet.set_split(
        cluster, ns, model, canary_split(model, stable, canary, share)),
    scrape=lambda: (pool_metrics_text(stable_replica_urls), pool_metrics_text(canary_urls)),
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator
from dataclasses import dataclass, field, replace
from typing import Any

from webapp.admin.canary import CanaryPlan, validate_plan
from webapp.admin.canary_runner import CanaryResult, CanaryStep, Texts, run_canary
from webapp.admin.errors import InvalidCanaryPlan
from webapp.admin.jobs import Job, JobDefinition
from webapp.cluster.errors import InvalidPool
from webapp.cluster.pools import Backend, check_pool_name, validate_split


@dataclass(frozen=True)
class CanaryRequest:
    """Move model name ``model`` from pool ``stable`` to pool ``canary`` by ``plan``.

    ``set_weights(share)`` gives the canary ``share`` % (the stable pool the rest);
    ``scrape()`` returns both pools' /metrics texts (stable, canary). ``sleep`` and ``clock``
    are for tests (default: the soak waits on the job's cancel event)."""

    model: str
    stable: str
    canary: str
    plan: CanaryPlan
    set_weights: Callable[[int], None] = field(compare=False)
    scrape: Callable[[], Texts] = field(compare=False)
    sleep: Callable[[float], object] | None = field(default=None, compare=False)
    clock: Callable[[], float] = field(default=time.monotonic, compare=False)


@dataclass(frozen=True)
class CanaryDetail:
    """What the page draws: the pools, the current weights (stable %, canary %), every judged
    window so far, and the result once it has ended."""

    stable: str
    canary: str
    weights: tuple[int, int] = (100, 0)
    steps: tuple[CanaryStep, ...] = ()
    result: CanaryResult | None = None


def canary_split(model: str, stable: str, canary: str, share: int) -> tuple[Backend, ...]:
    """The backends of ``model`` while the canary takes ``share`` %: what ``set_weights``
    hands to the fleet (``fleet.set_split(cluster, ns, model, backends)``); ``InvalidPool``
    for a share outside 0-100 or a bad pool name."""
    return validate_split(model, (Backend(stable, 100 - share), Backend(canary, share)))


def _begin(req: CanaryRequest, job: Job) -> CanaryRequest:
    check_pool_name(req.stable, "stable")
    check_pool_name(req.canary, "canary")
    if req.stable == req.canary:
        raise InvalidPool("canary", "The canary must be another pool than the stable one.")
    if not isinstance(req.plan, CanaryPlan):
        raise InvalidCanaryPlan("plan", "The canary needs a plan: its steps and thresholds.")
    validate_plan(req.plan)
    shares = ", ".join(f"{s}%" for s in req.plan.steps)
    job.progress(f"Canary of {req.model}: {req.canary} will take {shares} of the traffic.")
    return req


def _ending(req: CanaryRequest, res: CanaryResult) -> str:
    if res.outcome == "promoted":
        return f"Promoted: {req.canary} serves all of {req.model}'s traffic."
    if res.outcome == "rolled_back":
        return f"Rolled back: {req.canary} takes none of {req.model}'s traffic."
    return res.reason


def _absorb(req: CanaryRequest, job: Job, item: CanaryStep | CanaryResult) -> None:
    detail: CanaryDetail = job.detail
    if isinstance(item, CanaryResult):
        changes = {"weights": item.weights, "result": item}
        job.progress(_ending(req, item), detail=replace(detail, **changes))
        return
    message = f"Step {item.step} ({item.share}% on the canary): {item.decision.reason}"
    job.progress(message, detail=replace(detail, weights=item.weights, steps=(*detail.steps, item)))


def _run(req: CanaryRequest, job: Job) -> CanaryResult:
    def set_weights(share: int) -> None:
        req.set_weights(share)
        stable = f"{req.stable} {100 - share}%"
        message = (
            f"{req.canary} now takes {share}% of {req.model}'s traffic, {stable}."
            if share
            else f"Rolling back: all of {req.model}'s traffic goes to {req.stable} again."
        )
        job.progress(message, detail=replace(job.detail, weights=(100 - share, share)))

    steps: Generator[CanaryStep | CanaryResult, None, None] = run_canary(
        req.plan, set_weights=set_weights, scrape=req.scrape, cancel=job.cancel,
        sleep=req.sleep, clock=req.clock,
    )  # fmt: skip
    result = None
    try:
        for item in steps:
            _absorb(req, job, item)
            if isinstance(item, CanaryResult):
                result = item
    finally:
        steps.close()  # rolls back if it stopped early
    if result is None:
        raise RuntimeError("the canary ended without a result")
    return result


def _outcome(res: CanaryResult) -> tuple[str, dict[str, Any]]:
    stable, canary = res.weights
    return res.outcome, {"decision": res.reason, "windows": res.steps,
                         "stable_weight": stable, "canary_weight": canary}  # fmt: skip


CANARY: JobDefinition[CanaryRequest, CanaryRequest, CanaryResult] = JobDefinition(
    kind="canary",
    target=lambda r: f"{r.model}: {r.stable} -> {r.canary}",
    details=lambda r: {
        "model": r.model,
        "stable": r.stable,
        "canary": r.canary,
        "steps": list(r.plan.steps) if isinstance(r.plan, CanaryPlan) else None,
    },  # fmt: skip
    initial_detail=lambda r: CanaryDetail(stable=r.stable, canary=r.canary),
    begin=_begin,
    run=_run,
    audit_start="canary.start",
    audit_result="canary.result",
    outcome=_outcome,
    failed="error",
    audit_cancel="canary.cancel",
    cancel_note="Cancel requested by {actor}; sending all traffic back to the stable pool.",
)
