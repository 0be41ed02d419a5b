"""Following the new model's load during a switch: the view for the admin page on each
rollout look, the load in progress for the chat page, and the finished load for the
next prediction (``webapp.store.loads``).

The store is a help, never a condition: when it is unavailable (or has no past loads) the
page shows the phases without a prediction and the switch goes on.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import UTC, datetime

from webapp.admin.loading import LoadView, load_view
from webapp.cluster.loading import Estimate, estimate
from webapp.cluster.pod_load import PodLoad
from webapp.store import ConversationStore, StoreError
from webapp.store.loads import LoadInProgress, ModelLoad, finish_load, past_loads, publish_load

log = logging.getLogger(__name__)

#: how a rollout's end is stored (``RolloutSnapshot.state`` -> ``ModelLoad.outcome``)
OUTCOME = {"ready": "ready", "failed": "failed", "cancelled": "cancelled"}


class LoadTracker:
    """One switch's load of ``model``; ``look`` on each rollout snapshot that has a
    ``PodLoad``, ``finish`` once the rollout ended (a second ``finish`` does nothing)."""

    def __init__(self, store: ConversationStore | None, model: str) -> None:
        self.store, self.model = store, model
        self._past: dict[str, list[Mapping[str, float]]] = {}  # per GPU type, read once
        self._row: int | None = None
        self._last: PodLoad | None = None
        self._finished = False

    def look(self, load: PodLoad) -> LoadView:
        """The page's view of ``load``; publishes it (or records it, once ready)."""
        self._last = load
        guess = estimate(load.progress, self._past_of(load.gpu_type))
        if load.progress.ready:
            self.finish("ready")
        elif not self._finished:
            self._publish(load, guess)
        return load_view(self.model, load.gpu_type, load.progress, guess)

    def finish(self, outcome: str) -> None:
        """Store the load as ended with ``outcome`` (ready / failed / cancelled)."""
        if self._finished or self._last is None:
            return
        self._finished = True
        progress, gpu_type = self._last.progress, self._last.gpu_type
        ended = ModelLoad(
            model=self.model,
            gpu_type=gpu_type,
            started_at=progress.started_at or progress.now,
            ready_at=progress.ready_at if outcome == "ready" else None,
            phases=progress.durations(),
            outcome=outcome,
        )
        self._safely("record the load", lambda s: finish_load(s, self._row, ended))

    def _past_of(self, gpu_type: str) -> list[Mapping[str, float]]:
        if gpu_type not in self._past:
            loads = self._safely("read past loads", lambda s: past_loads(s, self.model, gpu_type))
            self._past[gpu_type] = [load.phases for load in loads or []]
        return self._past[gpu_type]

    def _publish(self, load: PodLoad, guess: Estimate) -> None:
        progress = load.progress
        now = datetime.now(UTC)
        current = LoadInProgress(
            model=self.model,
            gpu_type=load.gpu_type,
            started_at=progress.started_at or now,
            phase=progress.current or "scheduled",
            eta_s=guess.eta_s,
            updated_at=now,
            id=self._row,
        )
        row = self._safely("publish the load", lambda s: publish_load(s, current))
        self._row = row if row is not None else self._row

    def _safely(self, what: str, fn):
        """``fn(store)``; None without a store or when it fails (logged, the switch goes on)."""
        if self.store is None:
            return None
        try:
            return fn(self.store)
        except (StoreError, ValueError) as exc:
            log.warning("could not %s of %s: %s", what, self.model, type(exc).__name__)
            return None
