"""The canary's policy: plan validation, signals from two scrapes per pool, the verdict."""

from __future__ import annotations

import pytest

from tests.support.vllm_metrics_text import metrics_text
from webapp.admin.canary import (
    CanaryPlan,
    History,
    PoolSignals,
    Signals,
    decide,
    signals,
    validate_plan,
)
from webapp.admin.errors import InvalidCanaryPlan

# ---------------------------------------------------------------- the plan


def test_the_default_plan_is_valid_and_steps_5_25_50_100():
    plan = CanaryPlan()
    assert validate_plan(plan) is plan
    assert plan.steps == (5, 25, 50, 100)


@pytest.mark.parametrize(
    ("changes", "field", "words"),
    [
        ({"steps": ()}, "steps", "whole percents"),
        ({"steps": (5, 2.5, 100)}, "steps", "whole percents"),
        ({"steps": (5, True, 100)}, "steps", "whole percents"),
        ({"steps": (0, 50, 100)}, "steps", "from 1 to 100"),
        ({"steps": (5, 50, 120)}, "steps", "from 1 to 100"),
        ({"steps": (25, 5, 100)}, "steps", "must grow"),
        ({"steps": (5, 5, 100)}, "steps", "must grow"),
        ({"steps": (5, 25, 50)}, "steps", "100% of the traffic (got 50%)"),
        ({"soak_s": 0}, "soak_s", "above 0"),
        ({"soak_s": float("nan")}, "soak_s", "above 0"),
        ({"max_error_rate_increase": -1}, "max_error_rate_increase", "above 0"),
        ({"max_ttft_ratio": 0}, "max_ttft_ratio", "above 0"),
        ({"max_ttft_ratio": "1.5"}, "max_ttft_ratio", "above 0"),
        ({"ttft_floor_s": 0}, "ttft_floor_s", "above 0"),
        ({"min_requests": 0}, "min_requests", "at least 1"),
        ({"min_requests": 2.5}, "min_requests", "whole number"),
        ({"max_waits": 0}, "max_waits", "at least 1"),
        ({"max_unreadable": -3}, "max_unreadable", "at least 1"),
    ],
)
def test_a_bad_plan_is_refused_with_a_plain_message_naming_the_field(changes, field, words):
    with pytest.raises(InvalidCanaryPlan) as refused:
        validate_plan(CanaryPlan(**changes))
    assert refused.value.field == field
    assert words in str(refused.value)


def test_a_single_step_to_100_is_a_valid_plan():
    assert validate_plan(CanaryPlan(steps=(100,))).steps == (100,)


# ---------------------------------------------------------------- signals


def _signals(stable: tuple[dict, dict], canary: tuple[dict, dict]) -> Signals:
    return signals(*(metrics_text(**kw) for kw in (*stable, *canary)))


EMPTY: dict = {}


@pytest.mark.parametrize(
    ("before", "after", "want"),
    [
        # increases over the window, not totals
        ({"stop": 100, "ttfts": [0.2] * 10},
         {"stop": 150, "error": 2, "ttfts": [0.2] * 10 + [0.7] * 52},
         PoolSignals(52, 2, 0.7375)),  # 0.5 + 0.95 × (0.75 - 0.5)
        # aborts are failures too
        (EMPTY, {"stop": 8, "abort": 2, "ttfts": [0.03] * 10}, PoolSignals(10, 2, 0.039)),
        # counter reset (the pod restarted): the new values are the increase
        ({"stop": 500, "error": 9, "ttfts": [0.2] * 500}, {"stop": 4, "ttfts": [0.3] * 4},
         PoolSignals(4, 0, 0.4875)),
        # an empty histogram: requests but no TTFT (none reached a first token)
        (EMPTY, {"error": 5}, PoolSignals(5, 5, None)),
        (EMPTY, EMPTY, PoolSignals(0, 0, None)),
        # HTTP 5xx where the instrumentator is present: the larger count, never the sum
        ({"stop": 10, "http_2xx": 10, "http_5xx": 0},
         {"stop": 20, "http_2xx": 20, "http_5xx": 5, "ttfts": [0.02] * 10},
         PoolSignals(15, 5, 0.0195)),
        ({"http_2xx": 0, "http_5xx": 0}, {"stop": 9, "error": 1, "http_2xx": 9, "http_5xx": 1},
         PoolSignals(10, 1, None)),
    ],
)  # fmt: skip
def test_signals_are_the_increase_over_the_window(before, after, want):
    sig = _signals((before, after), (EMPTY, EMPTY))
    assert sig.problem is None
    assert sig.stable.requests == want.requests and sig.stable.errors == want.errors
    assert sig.stable.ttft_p95_s == pytest.approx(want.ttft_p95_s)
    assert sig.canary == PoolSignals(0, 0, None)


@pytest.mark.parametrize(
    ("texts", "pool"),
    [
        (("<html>502 Bad Gateway</html>", "", "", ""), "stable"),
        ((metrics_text(), metrics_text(), metrics_text(), "garbage{{{ 1 2 3"), "canary"),
        ((metrics_text(), metrics_text(), "vllm:num_requests_running 3\n", metrics_text()),
         "canary"),
    ],
)  # fmt: skip
def test_metrics_that_are_not_vllm_request_metrics_make_signals_unavailable(texts, pool):
    sig = signals(*texts)
    assert (sig.stable, sig.canary) == (None, None)
    assert sig.problem == f"the {pool} pool's metrics could not be read"


# ---------------------------------------------------------------- the verdict

PLAN = CanaryPlan(min_requests=20, max_error_rate_increase=2.0, max_ttft_ratio=1.5)
GOOD = PoolSignals(requests=400, errors=4, ttft_p95_s=1.0)


@pytest.mark.parametrize(
    ("stable", "canary", "history", "verdict", "reason"),
    [
        (GOOD, PoolSignals(20, 0, 1.2), None, "promote",
         "The canary's error rate 0.0% (stable 1.0%) and TTFT p95 1.2 s (1.2× stable's 1.0 s) "
         "are within the limits: promoting."),
        (GOOD, PoolSignals(100, 3, 1.5), None, "promote", "1.5× stable's 1.0 s"),
        (GOOD, PoolSignals(100, 3, 1.48), None, "promote", "1.48× stable's 1.0 s"),
        (GOOD, PoolSignals(100, 3, 1.52), None, "rollback", "is 1.52× the stable pool's"),
        (GOOD, PoolSignals(100, 2, 3.1), None, "rollback",
         "TTFT p95 of the canary 3.1 s is 3.1× the stable pool's 1.0 s (limit 1.5×): "
         "rolling back."),
        (GOOD, PoolSignals(100, 4, 1.0), None, "rollback",
         "The canary's error rate 4.0% is 3.0 points above the stable pool's 1.0% "
         "(limit +2): rolling back."),
        (GOOD, PoolSignals(50, 50, None), None, "rollback", "error rate 100.0%"),
        (GOOD, PoolSignals(100, 3, None), None, "promote", "TTFT p95 not measured"),
        # below the TTFT floor (50 ms) a 3× ratio is noise, not a regression
        (PoolSignals(400, 0, 0.002), PoolSignals(50, 0, 0.006), None, "promote",
         "TTFT p95 50 ms (1.0× stable's 50 ms)"),
        (PoolSignals(400, 0, 0.05), PoolSignals(50, 0, 0.2), None, "rollback",
         "TTFT p95 of the canary 200 ms is 4.0× the stable pool's 50 ms"),
        # too little traffic: wait, then give up after max_waits windows
        (GOOD, PoolSignals(19, 0, 1.0), None, "wait",
         "The canary finished 19 of the 20 requests it needs to be judged; waiting for more "
         "traffic."),
        (GOOD, PoolSignals(3, 3, None), History(waited=4), "rollback",
         "The canary finished 3 of the 20 requests it needs to be judged after 5 windows: "
         "not enough traffic to judge it; rolling back."),
        # at 100 % the stable pool gets nothing: the last baseline stands in for it
        (PoolSignals(0, 0, None), PoolSignals(300, 1, 3.0), History(baseline=GOOD),
         "rollback", "3.0× the stable pool's 1.0 s"),
        (PoolSignals(2, 0, 0.1), PoolSignals(300, 1, 1.1), History(baseline=GOOD),
         "promote", "1.1× stable's 1.0 s"),
        # no stable traffic and no baseline: errors judged against 0 %
        (PoolSignals(0, 0, None), PoolSignals(100, 5, 1.0), None, "rollback",
         "5.0 points above the stable pool's 0.0%"),
    ],
)  # fmt: skip
def test_decide(stable, canary, history, verdict, reason):
    decision = decide(Signals(stable, canary), PLAN, history)
    assert decision.verdict == verdict
    assert reason in decision.reason


def test_unreadable_signals_wait_then_roll_back_after_max_unreadable_windows():
    sig = Signals(problem="the canary pool's metrics could not be read")
    plan = CanaryPlan(max_unreadable=3)
    first = decide(sig, plan)
    assert (first.verdict, first.reason) == ("wait", (
        "Signals unavailable (the canary pool's metrics could not be read); waiting "
        "(1 of 3 unreadable windows)."
    ))  # fmt: skip
    assert decide(sig, plan, History(unreadable=1)).verdict == "wait"
    last = decide(sig, plan, History(unreadable=2))
    assert (last.verdict, last.reason) == ("rollback", (
        "Signals unavailable (the canary pool's metrics could not be read) for 3 windows "
        "in a row: rolling back."
    ))  # fmt: skip


def test_a_garbage_scrape_gives_a_waiting_decision():
    sig = signals(metrics_text(), metrics_text(), metrics_text(), "Service Unavailable")
    assert decide(sig, PLAN).verdict == "wait"
