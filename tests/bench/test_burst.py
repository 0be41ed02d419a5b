"""``bench.burst``'s table: per app the medians over the rounds (no machine, no timing)."""

from __future__ import annotations

from pathlib import Path

from bench.burst import markdown


def test_each_app_gets_the_medians_of_its_rounds():
    rounds = {
        "before": [(0.9, 0.7, 400.0, 1500.0, 60.0, 0), (0.8, 0.6, 600.0, 2500.0, 70.0, 1),
                   (0.85, 0.65, 500.0, 2000.0, 65.0, 0)],
        "after": [(0.91, 0.8, 450.0, 900.0, 62.0, 0)],
    }  # fmt: skip
    lines = markdown(rounds, 48, 3, Path("/tmp/before"))
    rows = {r.split("|")[1].strip(): [c.strip() for c in r.split("|")[2:-1]]
            for r in lines if r.startswith("| before") or r.startswith("| after")}  # fmt: skip
    assert rows["before"] == ["0.850", "0.650", "500", "2000", "65", "0"]
    assert rows["after"] == ["0.910", "0.800", "450", "900", "62", "0"]
    assert "48 sessions per app, 3 rounds" in lines[0] and "`/tmp/before`" in lines[0]
