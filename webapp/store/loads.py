"""Finished model loads: how long each start of the model server took, phase by phase.

The switch job records one row when a vLLM pod it started is ready (or failed, or was
cancelled). While the pod loads, the same row has outcome ``loading`` with the current
phase, the ETA and when it was last updated (``publish_load``), so the chat page, which
has no cluster access, can say what is happening (``current_load``); ``finish_load``
turns it into a finished load. The admin page reads the newest loads of the same model on the same GPU type
to predict the next one (``webapp.cluster.loading.estimate``). The phase names are the
cluster package's (``webapp.cluster.loading.PHASES``); the store keeps whatever names it is
given, so it does not depend on the cluster package.

Times are naive UTC in the database like every time of the store; aware times are
converted. What is read back is checked again (a row written by hand or by an older
version with a phase that is not a number of seconds loses that phase, not the page).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import insert, select, update

from webapp.store import engine as db
from webapp.store.models import model_loads as L
from webapp.store.repository import ConversationStore

OUTCOMES: frozenset[str] = frozenset({"ready", "failed", "cancelled"})
LOADING = "loading"  # the outcome of a load in progress
DEFAULT_MAX_AGE_S = 30.0  # a load in progress not updated for this long is stale
MODEL_MAX_CHARS = 200
GPU_TYPE_MAX_CHARS = 100
PHASE_NAME_MAX_CHARS = 64
MAX_PHASES = 32
DEFAULT_PAST = 20


@dataclass(frozen=True)
class ModelLoad:
    """One start of the model server: ``phases`` maps a phase name to its seconds."""

    model: str
    gpu_type: str
    started_at: datetime
    ready_at: datetime | None
    phases: Mapping[str, float] = field(default_factory=dict)
    outcome: str = "ready"
    id: int | None = None  # set once stored


def _naive_utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        return value
    return value.astimezone(UTC).replace(tzinfo=None)


def _seconds(value: Any) -> float | None:
    """A phase duration as float seconds, or None when it is not a finite number >= 0."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    seconds = float(value)
    return round(seconds, 3) if math.isfinite(seconds) and seconds >= 0 else None


def _checked(load: ModelLoad) -> dict[str, Any]:
    """The row to insert; ``ValueError`` naming what is wrong (a caller's bug, nothing stored)."""
    if load.outcome not in OUTCOMES:
        raise ValueError(f"outcome must be one of {sorted(OUTCOMES)}, not {load.outcome!r}")
    if not load.model or len(load.model) > MODEL_MAX_CHARS:
        raise ValueError(f"model must have 1 to {MODEL_MAX_CHARS} characters")
    if len(load.gpu_type) > GPU_TYPE_MAX_CHARS:
        raise ValueError(f"gpu_type must have at most {GPU_TYPE_MAX_CHARS} characters")
    if len(load.phases) > MAX_PHASES:
        raise ValueError(f"at most {MAX_PHASES} phases, not {len(load.phases)}")
    phases: dict[str, float] = {}
    for name, value in load.phases.items():
        seconds = _seconds(value)
        if not isinstance(name, str) or not 0 < len(name) <= PHASE_NAME_MAX_CHARS:
            raise ValueError(f"phase names must have 1 to {PHASE_NAME_MAX_CHARS} characters")
        if seconds is None:
            raise ValueError(f"phase {name!r} must last a finite number of seconds >= 0")
        phases[name] = seconds
    started = _naive_utc(load.started_at)
    ready = None if load.ready_at is None else _naive_utc(load.ready_at)
    if ready is not None and ready < started:
        raise ValueError("ready_at is before started_at")
    return {
        "model": load.model,
        "gpu_type": load.gpu_type,
        "started_at": started,
        "ready_at": ready,
        "phases": phases,
        "outcome": load.outcome,
    }


def record_load(store: ConversationStore, load: ModelLoad) -> int:
    """Store a finished load; returns its id. ``StoreUnavailable`` when the database is."""
    row = _checked(load)
    with db.transaction(store.migrated_engine()) as conn:
        return int(conn.execute(insert(L).values(**row)).inserted_primary_key[0])


def _load(row: Any) -> ModelLoad:
    raw = row.phases if isinstance(row.phases, dict) else {}
    phases = {str(k): s for k, v in raw.items() if (s := _seconds(v)) is not None}
    return ModelLoad(
        model=row.model,
        gpu_type=row.gpu_type,
        started_at=row.started_at,
        ready_at=row.ready_at,
        phases=phases,
        outcome=row.outcome,
        id=row.id,
    )


def past_loads(
    store: ConversationStore,
    model: str,
    gpu_type: str,
    *,
    limit: int = DEFAULT_PAST,
    outcome: str | None = "ready",
) -> list[ModelLoad]:
    """The newest ``limit`` loads of ``model`` on ``gpu_type``, newest first.

    By default only loads that ended ready (a failed load's phases stop half-way and would
    pull a prediction down); ``outcome=None`` returns every outcome."""
    query = select(L).where(L.c.model == model, L.c.gpu_type == gpu_type)
    if outcome is not None:
        query = query.where(L.c.outcome == outcome)
    query = query.order_by(L.c.started_at.desc(), L.c.id.desc()).limit(max(0, int(limit)))
    with db.transaction(store.migrated_engine()) as conn:
        return [_load(row) for row in conn.execute(query).all()]


# ---------------------------------------------------------------- a load in progress


@dataclass(frozen=True)
class LoadInProgress:
    """A load under way as the chat page needs it: the model, the phase, the ETA in
    seconds at ``updated_at`` (None: no prediction yet)."""

    model: str
    gpu_type: str
    started_at: datetime
    phase: str
    eta_s: float | None
    updated_at: datetime
    id: int | None = None  # set once stored

    def eta_at(self, now: datetime) -> float | None:
        """Seconds left at ``now``: the ETA counted down since it was written (>= 0)."""
        if self.eta_s is None:
            return None
        passed = (_naive_utc(now) - _naive_utc(self.updated_at)).total_seconds()
        return max(0.0, self.eta_s - max(0.0, passed))


def _progress_row(load: LoadInProgress) -> dict[str, Any]:
    if not load.model or len(load.model) > MODEL_MAX_CHARS:
        raise ValueError(f"model must have 1 to {MODEL_MAX_CHARS} characters")
    if len(load.gpu_type) > GPU_TYPE_MAX_CHARS:
        raise ValueError(f"gpu_type must have at most {GPU_TYPE_MAX_CHARS} characters")
    if not 0 < len(load.phase) <= PHASE_NAME_MAX_CHARS:
        raise ValueError(f"phase must have 1 to {PHASE_NAME_MAX_CHARS} characters")
    eta = None if load.eta_s is None else _seconds(load.eta_s)
    if load.eta_s is not None and eta is None:
        raise ValueError("eta_s must be a finite number of seconds >= 0")
    return {
        "model": load.model,
        "gpu_type": load.gpu_type,
        "started_at": _naive_utc(load.started_at),
        "current_phase": load.phase,
        "eta_s": eta,
        "updated_at": _naive_utc(load.updated_at),
    }


def publish_load(store: ConversationStore, load: LoadInProgress) -> int:
    """Store or update (``load.id``) a load in progress; returns its id."""
    row = _progress_row(load)
    with db.transaction(store.migrated_engine()) as conn:
        if load.id is not None:
            done = conn.execute(
                update(L).where(L.c.id == load.id, L.c.outcome == LOADING).values(**row)
            )
            if done.rowcount:
                return load.id
        values = row | {"ready_at": None, "phases": {}, "outcome": LOADING}
        return int(conn.execute(insert(L).values(**values)).inserted_primary_key[0])


def finish_load(store: ConversationStore, load_id: int | None, load: ModelLoad) -> int:
    """Turn the load in progress ``load_id`` into the finished ``load`` (inserted when
    there is no such row); returns its id."""
    row = _checked(load) | {"current_phase": None, "eta_s": None}
    with db.transaction(store.migrated_engine()) as conn:
        if load_id is not None:
            done = conn.execute(update(L).where(L.c.id == load_id).values(**row))
            if done.rowcount:
                return load_id
        return int(conn.execute(insert(L).values(**row)).inserted_primary_key[0])


def current_load(
    store: ConversationStore, *, max_age_s: float = DEFAULT_MAX_AGE_S, now: datetime | None = None
) -> LoadInProgress | None:
    """The newest load in progress updated within ``max_age_s`` (an older one was left by
    a process that stopped), or None."""
    since = _naive_utc(now or datetime.now(UTC)) - timedelta(seconds=max_age_s)
    query = (
        select(L)
        .where(L.c.outcome == LOADING, L.c.updated_at >= since)
        .order_by(L.c.updated_at.desc(), L.c.id.desc())
        .limit(1)
    )
    with db.transaction(store.migrated_engine()) as conn:
        row = conn.execute(query).first()
    if row is None or not row.current_phase:
        return None
    return LoadInProgress(
        model=row.model,
        gpu_type=row.gpu_type,
        started_at=row.started_at,
        phase=row.current_phase,
        eta_s=_seconds(row.eta_s),
        updated_at=row.updated_at,
        id=row.id,
    )
