"""run_canary step by step against simulated traffic: every soak sends ``per_window``
requests split by the weights it was given, the canary behaving as the test says."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import pytest

from tests.support.vllm_metrics_text import metrics_text
from webapp.admin.canary import CanaryPlan
from webapp.admin.canary_runner import CanaryResult, CanaryStep, run_canary
from webapp.admin.errors import InvalidCanaryPlan
from webapp.llm.metrics import MetricsUnavailable


@dataclass
class Pool:
    ttft_s: float = 0.2
    error_every: int = 0  # every Nth request fails (0: none)
    stop: int = 0
    error: int = 0
    ttfts: list[float] = field(default_factory=list)

    def serve(self, n: int) -> None:
        for _ in range(n):
            if self.error_every and (self.stop + self.error + 1) % self.error_every == 0:
                self.error += 1
            else:
                self.stop += 1
                self.ttfts.append(self.ttft_s)

    def text(self) -> str:
        return metrics_text(stop=self.stop, error=self.error, ttfts=self.ttfts)


@dataclass
class World:
    """Two pools behind one model name; ``weights`` is what set_weights was called with."""

    canary: Pool = field(default_factory=Pool)
    stable: Pool = field(default_factory=Pool)
    per_window: int = 200
    shares: list[int] = field(default_factory=list)
    garbage: set[int] = field(default_factory=set)  # scrape numbers answering garbage
    unreachable: set[int] = field(default_factory=set)  # scrape numbers that fail
    scrapes: int = 0
    cancel: threading.Event = field(default_factory=threading.Event)
    cancel_after_soaks: int | None = None
    soaks: int = 0
    now: float = 0.0

    def set_weights(self, share: int) -> None:
        self.shares.append(share)

    def sleep(self, seconds: float) -> None:
        self.now += seconds
        self.soaks += 1
        share = self.shares[-1]
        to_canary = self.per_window * share // 100
        self.canary.serve(to_canary)
        self.stable.serve(self.per_window - to_canary)
        if self.cancel_after_soaks == self.soaks:
            self.cancel.set()

    def scrape(self) -> tuple[str, str]:
        self.scrapes += 1
        if self.scrapes in self.unreachable:
            raise MetricsUnavailable("cannot reach the model server's metrics: ConnectError")
        if self.scrapes in self.garbage:
            return self.stable.text(), "<html>upstream connect error</html>"
        return self.stable.text(), self.canary.text()

    def run(self, plan: CanaryPlan) -> tuple[list[CanaryStep], CanaryResult]:
        items = list(
            run_canary(plan, set_weights=self.set_weights, scrape=self.scrape,
                       cancel=self.cancel, sleep=self.sleep, clock=lambda: self.now)
        )  # fmt: skip
        *steps, result = items
        assert isinstance(result, CanaryResult)
        assert all(isinstance(s, CanaryStep) for s in steps)
        return steps, result


PLAN = CanaryPlan(soak_s=60, min_requests=10, max_ttft_ratio=1.5, max_error_rate_increase=2)


def test_a_good_canary_takes_every_step_and_is_promoted():
    world = World()
    steps, result = world.run(PLAN)
    assert world.shares == [5, 25, 50, 100]
    assert [(s.step, s.share, s.weights) for s in steps] == [
        (1, 5, (95, 5)), (2, 25, (75, 25)), (3, 50, (50, 50)), (4, 100, (0, 100)),
    ]  # fmt: skip
    assert all(s.decision.verdict == "promote" for s in steps)
    assert steps[0].signals.canary.requests == 10 and steps[0].signals.stable.requests == 190
    assert steps[-1].signals.stable.requests == 0  # judged against the 50 % window's stable
    assert steps[0].window_s == 60
    assert (result.outcome, result.weights, result.steps) == ("promoted", (0, 100), 4)


def test_a_canary_with_3x_the_ttft_rolls_back_at_the_first_step():
    world = World(canary=Pool(ttft_s=0.6))
    steps, result = world.run(PLAN)
    assert world.shares == [5, 0]  # all traffic back on the stable pool
    assert steps[0].decision.verdict == "rollback"
    assert result.outcome == "rolled_back" and result.weights == (100, 0)
    assert result.reason == (
        "TTFT p95 of the canary 738 ms is 3.0× the stable pool's 242 ms (limit 1.5×): rolling back."
    )


def test_a_canary_whose_requests_fail_rolls_back_naming_its_error_rate():
    world = World(canary=Pool(error_every=5))
    steps, result = world.run(PLAN)
    assert world.shares == [5, 0]
    assert result.reason == (
        "The canary's error rate 20.0% is 20.0 points above the stable pool's 0.0% "
        "(limit +2): rolling back."
    )


def test_too_little_traffic_waits_with_a_growing_window_then_promotes():
    world = World(per_window=100)  # 5 % of 100 = 5 per window, 10 needed
    steps, result = world.run(PLAN)
    first, second = steps[:2]
    assert (first.decision.verdict, first.signals.canary.requests) == ("wait", 5)
    assert (second.decision.verdict, second.signals.canary.requests) == ("promote", 10)
    assert second.window_s == 120  # the window grew instead of starting again
    assert world.shares == [5, 25, 50, 100] and result.promoted


def test_a_canary_without_enough_traffic_rolls_back_after_max_waits():
    world = World(per_window=20)  # 1 request per window on the canary
    steps, result = world.run(CanaryPlan(soak_s=1, min_requests=10, max_waits=3))
    assert [s.decision.verdict for s in steps] == ["wait", "wait", "rollback"]
    assert result.outcome == "rolled_back" and "not enough traffic" in result.reason
    assert world.shares == [5, 0]


def test_garbage_metrics_wait_then_recover():
    world = World(garbage={2})  # the first window's end scrape is garbage
    steps, result = world.run(PLAN)
    assert steps[0].decision.verdict == "wait"
    assert steps[0].signals.problem == "the canary pool's metrics could not be read"
    assert steps[1].decision.verdict == "promote"
    assert result.promoted


def test_unreadable_metrics_roll_back_after_max_unreadable_windows():
    world = World(unreachable={2, 3, 4})
    steps, result = world.run(CanaryPlan(soak_s=1, min_requests=10, max_unreadable=3))
    assert [s.decision.verdict for s in steps] == ["wait", "wait", "rollback"]
    assert "ConnectError" in steps[0].decision.reason
    assert result.outcome == "rolled_back" and world.shares == [5, 0]


def test_an_unreadable_start_takes_the_next_scrape_as_the_window_start():
    world = World(unreachable={1})
    steps, result = world.run(PLAN)
    assert steps[0].decision.verdict == "wait"
    assert steps[1].signals.canary.requests == 10  # only the window after the good scrape
    assert result.promoted


def test_cancel_sends_all_traffic_back_to_the_stable_pool():
    world = World(cancel_after_soaks=2)  # during the second step's soak
    steps, result = world.run(PLAN)
    assert len(steps) == 1
    assert world.shares == [5, 25, 0]
    assert (result.outcome, result.weights) == ("cancelled", (100, 0))


def test_a_failing_set_weights_is_raised_after_sending_traffic_back():
    world = World()

    def set_weights(share: int) -> None:
        world.shares.append(share)
        if share == 25:
            raise RuntimeError("the API server refused the HTTPRoute")

    runner = run_canary(PLAN, set_weights=set_weights, scrape=world.scrape,
                        cancel=world.cancel, sleep=world.sleep)  # fmt: skip
    with pytest.raises(RuntimeError, match="refused the HTTPRoute"):
        list(runner)
    assert world.shares == [5, 25, 0]


def test_closing_the_runner_early_sends_all_traffic_back():
    world = World()
    runner = run_canary(PLAN, set_weights=world.set_weights, scrape=world.scrape,
                        cancel=world.cancel, sleep=world.sleep)  # fmt: skip
    next(runner)
    runner.close()
    assert world.shares == [5, 0]


def test_an_invalid_plan_is_refused_before_any_weight_is_set():
    world = World()
    with pytest.raises(InvalidCanaryPlan):
        world.run(CanaryPlan(steps=(50, 25, 100)))
    assert world.shares == []
