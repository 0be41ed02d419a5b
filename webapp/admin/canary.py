"""Canary by traffic share (issue 14): the plan an admin sets, the signals, the verdict.

A canary pool takes a growing share of one model name's traffic (``CanaryPlan.steps``, by
default 5 → 25 → 50 → 100 %). After each step has soaked, two scrapes of each pool's vLLM
``/metrics`` (the window's start and end) become ``Signals``: how many requests each pool
finished, how many failed, and the TTFT p95 of the window. ``decide`` turns them into a
``Decision``: promote (take the next step), wait for more traffic, or roll back — with the
reason in plain words, which the page shows and the audit log keeps.

Everything here is pure; ``webapp.admin.canary_runner`` drives the steps.

What counts (vLLM 0.1x-0.3x, as ``tests/llm/test_vllm_protocol.py`` pins them):
requests are ``vllm:request_success_total`` (every ``finished_reason``); failures are its
``error`` and ``abort`` reasons. vLLM's HTTP instrumentator adds
``http_requests_total{handler,status="5xx"}``: where present, a completion route's 5xx are
failures too. A request can show in both (an engine error answered 500), so each pool's count
is the larger of the two sources, never their sum. TTFT p95 comes from the
``vllm:time_to_first_token_seconds`` buckets' increase (``bucket_quantile``, like PromQL).
A counter that went down was reset (the pod restarted): its new value is the increase.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

from webapp.admin.errors import InvalidCanaryPlan
from webapp.llm.metrics import TTFT, Sample, bucket_quantile, histogram, parse_samples

DEFAULT_STEPS = (5, 25, 50, 100)
FAILED_REASONS = ("error", "abort")
FINISHED = "vllm:request_success_total"
HTTP = "http_requests_total"


@dataclass(frozen=True)
class CanaryPlan:
    """What the admin sets for one canary.

    ``steps``: the canary's share (%) at each step, strictly increasing, ending at 100.
    ``soak_s``: how long each step runs before it is judged.
    ``max_error_rate_increase``: percentage points the canary's error rate may exceed the
    stable pool's (2.0: 1 % → 3 % passes, 1 % → 3.5 % rolls back).
    ``max_ttft_ratio``: how many times the stable pool's TTFT p95 the canary's may be.
    ``min_requests``: requests the canary must finish in a window before it is judged.
    ``max_waits``: windows a step may wait for those requests, then it rolls back.
    ``max_unreadable``: windows in a row whose metrics cannot be read, then it rolls back.
    ``ttft_floor_s``: TTFTs below this count as this (a 2 ms vs 6 ms p95 is no regression).
    """

    steps: tuple[int, ...] = DEFAULT_STEPS
    soak_s: float = 120.0
    max_error_rate_increase: float = 2.0
    max_ttft_ratio: float = 1.5
    min_requests: int = 20
    max_waits: int = 5
    max_unreadable: int = 3
    ttft_floor_s: float = 0.05


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def validate_plan(plan: CanaryPlan) -> CanaryPlan:
    """Return ``plan`` if it can run, else raise ``InvalidCanaryPlan`` naming the field."""
    steps = plan.steps
    if not isinstance(steps, tuple | list) or not steps or not all(_count(s) for s in steps):
        raise InvalidCanaryPlan("steps", "Give the canary's traffic shares as whole percents, "
                                "for example 5, 25, 50, 100.")  # fmt: skip
    if any(not 1 <= s <= 100 for s in steps):
        raise InvalidCanaryPlan("steps", "Each step's traffic share must be from 1 to 100 (%).")
    if any(b <= a for a, b in zip(steps, steps[1:], strict=False)):
        raise InvalidCanaryPlan(
            "steps", "The steps must grow: each share larger than the one before "
            f"(got {', '.join(map(str, steps))})."
        )  # fmt: skip
    if steps[-1] != 100:
        raise InvalidCanaryPlan(
            "steps", f"The last step must give the canary 100% of the traffic (got {steps[-1]}%)."
        )
    for name, what in (
        ("soak_s", "The soak time of a step"),
        ("max_error_rate_increase", "The allowed error-rate increase"),
        ("max_ttft_ratio", "The allowed TTFT ratio"),
        ("ttft_floor_s", "The TTFT floor"),
    ):
        if not _number(getattr(plan, name)) or getattr(plan, name) <= 0:
            raise InvalidCanaryPlan(name, f"{what} must be a number above 0.")
    for name, what in (
        ("min_requests", "The requests a step needs"),
        ("max_waits", "The windows a step may wait for traffic"),
        ("max_unreadable", "The unreadable windows allowed"),
    ):
        if not _count(getattr(plan, name)) or getattr(plan, name) < 1:
            raise InvalidCanaryPlan(name, f"{what} must be a whole number, at least 1.")
    return plan


# ---------------------------------------------------------------- signals


@dataclass(frozen=True)
class Scrape:
    """What one pool's /metrics says, summed over engines and label sets."""

    finished: float  # requests finished, any reason
    failed: float  # finished with error/abort
    http_total: float | None  # completion routes' responses; None without the instrumentator
    http_5xx: float | None
    ttft: tuple[tuple[float, float], ...]  # cumulative (le, count) buckets


class MetricsUnreadable(ValueError):
    """The text is not vLLM metrics (a proxy page, garbage, an empty answer)."""


def read_scrape(text: str) -> Scrape:
    """Parse one pool's /metrics text; ``MetricsUnreadable`` when it holds no vLLM request
    metrics at all."""
    samples = parse_samples(text if isinstance(text, str) else "")
    by_reason = [s for s in samples if s.name == FINISHED]
    ttft = histogram(samples, TTFT)
    if not by_reason and ttft is None:
        raise MetricsUnreadable("no vllm:request_success or TTFT metrics")
    routes = [s for s in samples if s.name == HTTP and _label(s, "handler").endswith("completions")]
    failing = [s for s in routes if _label(s, "status").startswith("5")]
    return Scrape(
        finished=_total(by_reason),
        failed=_total(s for s in by_reason if _label(s, "finished_reason") in FAILED_REASONS),
        http_total=_total(routes) if routes else None,
        http_5xx=_total(failing) if routes else None,
        ttft=ttft.buckets if ttft else (),
    )


def _label(sample: Sample, name: str) -> str:
    return dict(sample.labels).get(name, "")


def _total(samples) -> float:
    return sum(s.value for s in samples if not math.isnan(s.value))


@dataclass(frozen=True)
class PoolSignals:
    """One pool over one window."""

    requests: float
    errors: float
    ttft_p95_s: float | None

    @property
    def error_rate(self) -> float | None:
        """Failed / finished (0..1); None without requests."""
        return self.errors / self.requests if self.requests > 0 else None


@dataclass(frozen=True)
class Signals:
    """Both pools over one window, or why they could not be read (``problem``)."""

    stable: PoolSignals | None = None
    canary: PoolSignals | None = None
    problem: str | None = None


def _increase(before: float | None, after: float | None) -> float:
    if after is None:
        return 0.0
    if before is None or after < before:  # new series, or the counter was reset
        return after
    return after - before


def _ttft_increase(before: Scrape, after: Scrape) -> tuple[tuple[float, float], ...]:
    old = dict(before.ttft)
    if any(c < old.get(le, 0.0) for le, c in after.ttft):  # reset: all of it is new
        return after.ttft
    return tuple((le, c - old.get(le, 0.0)) for le, c in after.ttft)


def pool_signals(before: Scrape, after: Scrape) -> PoolSignals:
    """What one pool did between two scrapes."""
    requests = _increase(before.finished, after.finished)
    errors = _increase(before.failed, after.failed)
    if after.http_total is not None:
        requests = max(requests, _increase(before.http_total, after.http_total))
        errors = max(errors, _increase(before.http_5xx, after.http_5xx))
    return PoolSignals(
        requests, min(errors, requests), bucket_quantile(_ttft_increase(before, after), 0.95)
    )


def signals(
    stable_before: str, stable_after: str, canary_before: str, canary_after: str
) -> Signals:
    """The window's signals from the /metrics texts of both pools at its start and end."""
    scrapes: dict[str, list[Scrape]] = {"stable": [], "canary": []}
    for pool, text in (("stable", stable_before), ("stable", stable_after),
                       ("canary", canary_before), ("canary", canary_after)):  # fmt: skip
        try:
            scrapes[pool].append(read_scrape(text))
        except MetricsUnreadable:
            return Signals(problem=f"the {pool} pool's metrics could not be read")
    return Signals(pool_signals(*scrapes["stable"]), pool_signals(*scrapes["canary"]))


def unavailable(problem: str) -> Signals:
    """Signals of a window whose metrics could not be fetched (``problem`` says why)."""
    return Signals(problem=problem)


# ---------------------------------------------------------------- the verdict

Verdict = Literal["promote", "wait", "rollback"]


@dataclass(frozen=True)
class History:
    """What the runner remembers between windows of a canary: windows in a row that could not
    be read, windows this step has waited for traffic, and the stable pool's last signals with
    enough requests (at 100 % the stable pool gets none; the canary is judged against these)."""

    unreadable: int = 0
    waited: int = 0
    baseline: PoolSignals | None = field(default=None)


@dataclass(frozen=True)
class Decision:
    """What to do after a window, and why, in words for the page and the audit log."""

    verdict: Verdict
    reason: str


def seconds(value: float) -> str:
    """A duration for people: "240 ms", "3.1 s"."""
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.1f} s"


def times(ratio: float, limit: float) -> str:
    """A ratio for people, precise enough not to read as the limit it crossed: "3.0×",
    "1.52×" against a 1.5× limit."""
    short = f"{ratio:.1f}"
    return f"{short}×" if float(short) != round(limit, 1) or ratio == limit else f"{ratio:.2f}×"


def percent(rate: float | None) -> str:
    return "no requests" if rate is None else f"{rate * 100:.1f}%"


def decide(sig: Signals, plan: CanaryPlan, history: History | None = None) -> Decision:
    """Promote, wait for more traffic, or roll back after one window (see the module doc)."""
    h = history or History()
    if sig.problem is not None or sig.stable is None or sig.canary is None:
        seen = h.unreadable + 1
        if seen >= plan.max_unreadable:
            return Decision("rollback", f"Signals unavailable ({sig.problem}) for {seen} "
                            "windows in a row: rolling back.")  # fmt: skip
        return Decision("wait", f"Signals unavailable ({sig.problem}); waiting "
                        f"({seen} of {plan.max_unreadable} unreadable windows).")  # fmt: skip
    canary = sig.canary
    if canary.requests < plan.min_requests:
        waited = h.waited + 1
        got = f"The canary finished {canary.requests:.0f} of the {plan.min_requests} requests"
        if waited >= plan.max_waits:
            return Decision("rollback", f"{got} it needs to be judged after {waited} windows: "
                            "not enough traffic to judge it; rolling back.")  # fmt: skip
        return Decision("wait", f"{got} it needs to be judged; waiting for more traffic.")
    stable = _reference(sig.stable, plan, h)
    return _judge(stable, canary, plan)


def _reference(stable: PoolSignals, plan: CanaryPlan, h: History) -> PoolSignals:
    if stable.requests >= plan.min_requests or h.baseline is None:
        return stable
    return h.baseline


def _judge(stable: PoolSignals, canary: PoolSignals, plan: CanaryPlan) -> Decision:
    c_rate, s_rate = canary.error_rate or 0.0, stable.error_rate or 0.0
    increase = (c_rate - s_rate) * 100
    rates = f"error rate {percent(c_rate)} (stable {percent(stable.error_rate)})"
    if increase > plan.max_error_rate_increase:
        return Decision("rollback", f"The canary's error rate {percent(c_rate)} is "
                        f"{increase:.1f} points above the stable pool's {percent(s_rate)} "
                        f"(limit +{plan.max_error_rate_increase:g}): rolling back.")  # fmt: skip
    if canary.ttft_p95_s is None or stable.ttft_p95_s is None:
        return Decision("promote", f"The canary's {rates} is within the limit; TTFT p95 not "
                        "measured (no first tokens in the window): promoting.")  # fmt: skip
    c_ttft = max(canary.ttft_p95_s, plan.ttft_floor_s)
    s_ttft = max(stable.ttft_p95_s, plan.ttft_floor_s)
    ratio = c_ttft / s_ttft
    shown = times(ratio, plan.max_ttft_ratio)
    if ratio > plan.max_ttft_ratio:
        return Decision(
            "rollback",
            f"TTFT p95 of the canary {seconds(c_ttft)} is {shown} the stable pool's "
            f"{seconds(s_ttft)} (limit {plan.max_ttft_ratio:g}×): rolling back.",
        )
    return Decision(
        "promote",
        f"The canary's {rates} and TTFT p95 {seconds(c_ttft)} ({shown} stable's "
        f"{seconds(s_ttft)}) are within the limits: promoting.",
    )
