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


def test_rows_pair_before_and_after_for_each_conversation_length():
    cells = {
        ("after", 12): Cell([61.0], [48.0], [14.0]),
        ("before", 0): Cell([58.0], [51.0], [11.0]),
        ("after", 0): Cell([46.0], [40.0], [9.0]),
        ("before", 12): Cell([75.0], [66.0], [14.0]),
    }
    rows = [x for x in markdown(cells, "abc123", 1) if x.startswith("| ") and x[2].isdigit()]
    assert [r.split("|")[1:3] for r in rows] == [
        [" 0 ", " before "], [" 0 ", " after "], [" 12 ", " before "], [" 12 ", " after "]
    ]  # fmt: skip
    assert rows[1].split("|")[3].strip() == "46 (46–46)"
    assert "`abc123`" in markdown(cells, "abc123", 1)[0]
