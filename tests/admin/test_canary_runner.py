"""run_canary step by step against simulated traffic (tests/support/canary_traffic.py)."""

from __future__ import annotations

import pytest

from tests.support.canary_traffic import Pool, World
from webapp.admin.canary import CanaryPlan
from webapp.admin.canary_runner import run_canary
from webapp.admin.errors import InvalidCanaryPlan

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
