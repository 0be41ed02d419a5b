"""Switching one pool's model in place (issue 14): ``POOL_SWITCH``.

The model switch itself is the console's ``actions.SWITCH`` on the pool's Deployment (its
Lease is the pool's, ``lock_name(pool)``; its rollout, rollback and load tracking unchanged);
what a pool adds is its route rule: the gateway sends requests by model name, so once the new
model serves, the pool's rule is renamed from the old model to the new one
(``fleet.rename_model``). Refused before anything changes: a model the catalog lacks (the
switch's own validation), a model another pool already serves, a pool whose model's traffic
is shared with a canary. A switch that rolls back leaves the rule as it was. Audited as
``pool.switch`` (started/refused, then the switch's outcome). A zero-downtime change of a
pool's model is the canary (``webapp.admin.canary_job``), not this.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from webapp.admin.actions import SWITCH, SwitchRequest
from webapp.admin.fleet_actions import pool_busy
from webapp.admin.jobs import Job, JobDefinition
from webapp.cluster import fleet
from webapp.cluster.switch import SwitchResult


@dataclass(frozen=True)
class PoolSwitch:
    """Serve ``switch.spec`` on pool ``switch.deployment`` (in place), which serves ``old``."""

    switch: SwitchRequest
    old: str

    @property
    def pool(self) -> str:
        return self.switch.deployment


def _begin(req: PoolSwitch, job: Job) -> tuple[PoolSwitch, Any]:
    s = req.switch
    fleet.check_rename(s.cluster, s.namespace, req.pool, req.old, s.spec.name)
    return req, SWITCH.begin(s, job)


def _run(held: tuple[PoolSwitch, Any], job: Job) -> SwitchResult:
    req, state = held
    s = req.switch
    result = SWITCH.run(state, job)
    if result.outcome == "switched":
        fleet.rename_model(s.cluster, s.namespace, req.pool, req.old, s.spec.name)
        job.progress(f"The gateway now sends {s.spec.name} to pool {req.pool}.")
    return result


POOL_SWITCH: JobDefinition[PoolSwitch, tuple[PoolSwitch, Any], SwitchResult] = JobDefinition(
    kind="pool", target=lambda r: f"{r.switch.namespace}/{r.pool}",
    details=lambda r: {"pool": r.pool, "model_before": r.old, "model": r.switch.spec.name},
    initial_detail=lambda r: SWITCH.initial_detail(r.switch), begin=_begin, run=_run,
    audit_start="pool.switch", audit_result="pool.switch", busy=pool_busy,
    outcome=lambda res: (res.outcome, {"message": res.message}), failed="error",
)  # fmt: skip
