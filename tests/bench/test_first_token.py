"""``bench.first_token``'s table: before and after side by side per conversation length,
medians with their range (no machine, no timing)."""

from __future__ import annotations

import pytest

from bench.first_token import Cell, _ms, markdown


@pytest.mark.parametrize(
    ("values", "shown"),
    [
        ([], "—"),
        ([40.0], "40 (40–40)"),
        ([50.0, 30.0, 41.0], "41 (30–50)"),
        ([-5.0, 5.0], "0 (-5–5)"),
    ],
)
def test_a_cell_is_the_median_and_its_range(values, shown):
    assert _ms(values) == shown


def test_rows_pair_before_and_after_for_each_conversation_length_then_the_floor():
    cells = {
        ("after", 12): Cell([61.0], [48.0], [14.0], [12.0]),
        ("floor", 0): Cell([30.0], [23.0], [10.0], [11.0]),
        ("before", 0): Cell([58.0], [51.0], [11.0], [13.0]),
        ("after", 0): Cell([46.0], [40.0], [9.0], [15.0]),
        ("before", 12): Cell([75.0], [66.0], [14.0], [12.0]),
    }
    rows = [x for x in markdown(cells, "abc123", 1) if x.startswith("| ") and x[2].isdigit()]
    assert [r.split("|")[1:3] for r in rows] == [
        [" 0 ", " before "], [" 0 ", " after "], [" 0 ", " floor "],
        [" 12 ", " before "], [" 12 ", " after "],
    ]  # fmt: skip
    # overhead, Enter -> request, of which the browser's part, first chunk -> on screen
    assert [c.strip() for c in rows[1].split("|")[3:7]] == [
        "46 (46–46)", "40 (40–40)", "15 (15–15)", "9 (9–9)"
    ]  # fmt: skip
    assert "`abc123`" in markdown(cells, "abc123", 1)[0]


def test_a_run_is_added_to_its_cell_against_the_direct_first_token():
    cell = Cell()
    run = {"first": 0.25, "browser_ms": 12.0,
           "breakdown": {"pre_request_ms": 35.0, "first_delivery_ms": 11.0}}  # fmt: skip
    cell.add(run, direct_first=0.21)
    assert (round(cell.overhead[0]), cell.before_request, cell.browser, cell.delivery) == (
        40, [35.0], [12.0], [11.0]
    )  # fmt: skip
    assert cell.last() == "overhead 40 ms, before request 35 ms (browser 12), delivery 11 ms"
