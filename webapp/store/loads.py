"""Finished model loads: how long each start of the model server took, phase by phase.

The switch job records one row when a vLLM pod it started is ready (or failed, or was
cancelled); the admin page reads the newest loads of the same model on the same GPU type
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
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import insert, select

from webapp.store import engine as db
from webapp.store.models import model_loads as L
from webapp.store.repository import ConversationStore

OUTCOMES: frozenset[str] = frozenset({"ready", "failed", "cancelled"})
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
