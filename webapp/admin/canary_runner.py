"""Run a canary step by step: set the share, soak, scrape both pools, decide (issue 14).

``run_canary`` takes its effects as small callables, so it runs the same against the fleet
(``set_weights`` → ``webapp.cluster.fleet.set_split``), a test's fakes, or anything else:

* ``set_weights(share)``: give the canary ``share`` % of the model name's traffic and the
  stable pool the rest (0: all traffic back to the stable pool);
* ``scrape()``: the /metrics texts of (the stable pool, the canary pool) now; it may raise
  ``MetricsUnavailable`` (the window is then unreadable);
* ``sleep(seconds)``: the soak (default: wait on ``cancel``, so a cancel ends it at once).

It yields a ``CanaryStep`` per judged window (the weights, the signals, the decision) and ends
with one ``CanaryResult``. Whatever stops it before a promotion — a rollback verdict, a cancel,
an error, the caller closing it — sends all traffic back to the stable pool first.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from webapp.admin.canary import (
    CanaryPlan,
    Decision,
    History,
    Signals,
    decide,
    signals,
    unavailable,
    validate_plan,
)
from webapp.llm.metrics import MetricsUnavailable, fetch_metrics_text

log = logging.getLogger(__name__)

Texts = tuple[str, str]


@dataclass(frozen=True)
class CanaryStep:
    """One judged window: the step (1-based) and its share, the weights while it ran
    (stable %, canary %), how long the window was, the signals and the decision."""

    step: int
    share: int
    weights: tuple[int, int]
    window_s: float
    signals: Signals
    decision: Decision


@dataclass(frozen=True)
class CanaryResult:
    """How the canary ended: ``outcome`` is promoted, rolled_back or cancelled; ``weights``
    what the traffic is left at (stable %, canary %); ``reason`` the last decision's words."""

    outcome: str
    reason: str
    weights: tuple[int, int]
    steps: int  # windows judged

    @property
    def promoted(self) -> bool:
        return self.outcome == "promoted"


def pool_metrics_text(
    replica_urls: Sequence[str], api_key: str | None = None, timeout: float = 3.0
) -> str:
    """One pool's /metrics: every replica's text, one after the other (the signals sum the
    series over all of them). A replica that cannot be read makes the pool unreadable
    (``MetricsUnavailable``): its missing counters would look like a reset."""
    if not replica_urls:
        raise MetricsUnavailable("the pool has no replica to read metrics from")
    return "".join(fetch_metrics_text(url, api_key, timeout) for url in replica_urls)


def _weights(share: int) -> tuple[int, int]:
    return (100 - share, share)


def _read(scrape: Callable[[], Texts]) -> Texts | str:
    """Both pools' texts, or why they could not be read."""
    try:
        stable, canary = scrape()
    except MetricsUnavailable as exc:
        return str(exc) or "the metrics could not be fetched"
    return stable, canary


def _window_signals(before: Texts | str, after: Texts | str) -> Signals:
    if isinstance(before, str):
        return unavailable(before)
    if isinstance(after, str):
        return unavailable(after)
    return signals(before[0], after[0], before[1], after[1])


def _next_history(h: History, sig: Signals, decision: Decision, plan: CanaryPlan) -> History:
    if sig.problem is not None:
        return History(h.unreadable + 1, h.waited, h.baseline)
    baseline = h.baseline
    if sig.stable is not None and sig.stable.requests >= plan.min_requests:
        baseline = sig.stable
    waited = h.waited + 1 if decision.verdict == "wait" else 0
    return History(0, waited, baseline)


def run_canary(
    plan: CanaryPlan,
    *,
    set_weights: Callable[[int], None],
    scrape: Callable[[], Texts],
    cancel: threading.Event,
    sleep: Callable[[float], object] | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> Iterator[CanaryStep | CanaryResult]:
    """Drive ``plan`` (validated first: ``InvalidCanaryPlan``); see the module docstring."""
    validate_plan(plan)
    soak = sleep if sleep is not None else cancel.wait
    settled = False
    history, judged = History(), 0
    try:
        for index, share in enumerate(plan.steps, start=1):
            if cancel.is_set():
                break
            set_weights(share)
            before, started = _read(scrape), clock()
            while not cancel.is_set():
                soak(plan.soak_s)
                if cancel.is_set():
                    break
                after = _read(scrape)
                sig = _window_signals(before, after)
                decision = decide(sig, plan, history)
                history, judged = _next_history(history, sig, decision, plan), judged + 1
                step = CanaryStep(index, share, _weights(share), clock() - started, sig, decision)
                if decision.verdict == "rollback":
                    set_weights(0)
                    settled = True
                    yield step
                    yield CanaryResult("rolled_back", decision.reason, _weights(0), judged)
                    return
                yield step
                if decision.verdict == "promote":
                    break
                if isinstance(before, str):  # no start point yet: this scrape becomes it
                    before, started = after, clock()
        if cancel.is_set():
            set_weights(0)
            settled = True
            why = "Cancelled by the admin: all traffic is back on the stable pool."
            yield CanaryResult("cancelled", why, _weights(0), judged)
            return
        settled = True
        yield CanaryResult("promoted", "The canary took every step within the limits and now "
                           "serves all of the traffic.", _weights(100), judged)  # fmt: skip
    finally:
        if not settled:
            _restore(set_weights)


def _restore(set_weights: Callable[[int], None]) -> None:
    """Send all traffic back to the stable pool after a failure or an early close."""
    try:
        set_weights(0)
    except Exception as exc:  # noqa: BLE001 - the original failure is what the caller sees
        log.warning("canary: could not send the traffic back to the stable pool: %s", exc)
