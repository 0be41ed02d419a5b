"""``bench.goals``' verdicts: the issue-12 targets applied to the parts' rows, one verdict per
``--stream-interval`` N, the median of the repeats judged (no machine, no timing)."""

from __future__ import annotations

import pytest

from bench.concurrency import ConcurrencyRow
from bench.goals import GoalsResult, goals_table, markdown, session_goals, stream_goals
from bench.streaming import StreamRow
from bench.ws_sessions import WsResult


def _ws(level: int, fractions: list[float], cpu: float = 80.0) -> WsResult:
    row = ConcurrencyRow(level, 512, fractions, [0.3] * len(fractions), cpu, 150.0, 170.0)
    return WsResult([row], {0: 50.0})


def _stream(tokens: int, rate: float, n: int, app: tuple, direct: tuple) -> StreamRow:
    row = StreamRow("fake", tokens, 1, rate=rate, interval=n)
    row.app_first, row.app_last = [app[0]], [app[1]]
    row.direct_first, row.direct_last = [direct[0]], [direct[1]]
    return row


def _cells(table: list[str], goal: str) -> list[str]:
    line = next(x for x in table if x.startswith(f"| {goal} |"))
    return [c.strip() for c in line.strip("|").split("|")]


@pytest.mark.parametrize(
    ("level", "fractions", "goal", "cell", "met"),
    [
        (32, [0.95, 0.91, 0.80], "32 sessions @100 tok/s: median fraction of backend rate",
         "0.910", "yes"),
        (32, [0.95, 0.89, 0.80], "32 sessions @100 tok/s: median fraction of backend rate",
         "0.890", "**no**"),
        (32, [0.95, 0.91, 0.75], "32 sessions: worst session", "0.750", "yes"),
        (32, [0.95, 0.91, 0.74], "32 sessions: worst session", "0.740", "**no**"),
        (48, [0.90, 0.85, 0.20], "48 sessions @100 tok/s: median fraction of backend rate",
         "0.850", "yes"),
        (48, [0.90, 0.84, 0.20], "48 sessions @100 tok/s: median fraction of backend rate",
         "0.840", "**no**"),
        (48, [0.90, 0.85, 0.20], "48 sessions: worst session", "0.200", None),  # no goal
        (4, [0.99, 0.98], "4 sessions @100 tok/s: median fraction of backend rate", "0.985",
         None),  # a smoke-check level: shown, not judged
    ],
)  # fmt: skip
def test_session_goals_hold_each_level_to_the_issue_target(level, fractions, goal, cell, met):
    res = GoalsResult([4], ws={4: [_ws(level, fractions)]})
    table = goals_table(session_goals(res), [4])
    _, _, value, verdict = _cells(table, goal)
    assert value == cell
    assert verdict == ("—" if met is None else f"N=4 {met}")


@pytest.mark.parametrize(
    ("app", "direct", "goal", "cell", "met"),
    [
        ((0.230, 1.5), (0.200, 1.5), "first-token overhead, app − direct (ms)", "30", "yes"),
        ((0.232, 1.5), (0.200, 1.5), "first-token overhead, app − direct (ms)", "32", "**no**"),
        ((0.2, 1.545), (0.2, 1.5), "last token, app / direct", "1.030", "yes"),
        ((0.2, 1.560), (0.2, 1.5), "last token, app / direct", "1.040", "**no**"),
    ],
)
def test_stream_goals_hold_every_case_to_30_ms_and_1_03(app, direct, goal, cell, met):
    res = GoalsResult([1], stream={1: [_stream(256, 200.0, 1, app, direct)]})
    _, target, value, verdict = _cells(
        goals_table(stream_goals(res), [1]), f"256 tokens @200 tok/s: {goal}"
    )
    assert (value, verdict) == (cell, f"N=1 {met}")
    assert target.startswith("≤")


def test_one_verdict_per_interval_and_the_median_of_the_repeats_is_judged():
    res = GoalsResult(
        [1, 4],
        ws={1: [_ws(32, [0.80]), _ws(32, [0.86]), _ws(32, [0.84])],
            4: [_ws(32, [0.93]), _ws(32, [0.91])]},
    )  # fmt: skip
    table = goals_table(session_goals(res), [1, 4])
    assert table[0] == "| goal | target | N=1 | N=4 | met? |"
    _, target, n1, n4, met = _cells(
        table, "32 sessions @100 tok/s: median fraction of backend rate"
    )
    assert (target, n1, n4) == ("≥ 0.90", "0.840 (0.800–0.860)", "0.920 (0.910–0.930)")
    assert met == "N=1 **no** · N=4 yes"


def test_a_level_missing_at_one_interval_reads_as_not_measured():
    res = GoalsResult([1, 4], ws={1: [_ws(32, [0.95])], 4: []})
    _, _, n1, n4, met = _cells(
        goals_table(session_goals(res), [1, 4]),
        "32 sessions @100 tok/s: median fraction of backend rate",
    )
    assert (n1, n4, met) == ("0.950", "—", "N=1 yes · N=4 —")


def test_a_failed_measurement_is_named_and_its_cells_read_not_measured():
    res = GoalsResult(
        [1, 4], ws={1: [_ws(32, [0.95])], 4: []}, busy={"whole run": 73.4},
        errors=["2b N=4 repeat 1: RuntimeError: the app did not start"],
    )  # fmt: skip
    text = "\n".join(markdown(res))
    assert "Measurement failed (its cells read —): `2b N=4 repeat 1: RuntimeError" in text
    assert "| 32 sessions: worst session | ≥ 0.75 | 0.950 | — | N=1 yes · N=4 — |" in text
    assert "whole run 73 %" in text
