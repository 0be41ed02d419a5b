"""The admin view of a load: headline, progress fraction, phase rows, prediction note."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from webapp.admin.loading import LOG_TAIL_LINES, PhaseRow, load_view, phase_label
from webapp.cluster.loading import PHASES, estimate, merge

T0 = datetime(2026, 12, 1, 18, 20, tzinfo=UTC)
PAST = [
    {"scheduled": 10.0, "pulling image": 60.0, "starting vLLM": 40.0, "loading weights": 30.0},
    {"scheduled": 10.0, "pulling image": 80.0, "starting vLLM": 40.0, "loading weights": 30.0},
]


def starts(*phases_at: tuple[str, float]) -> list[tuple[str, datetime]]:
    return [(phase, T0 + timedelta(seconds=s)) for phase, s in phases_at]


def view(found, now_s: float, past=PAST, gpu="nvidia-l4", log_tail=()):
    progress = merge(starts(*found), now=T0 + timedelta(seconds=now_s))
    return load_view("qwen2.5-7b-instruct", gpu, progress, estimate(progress, past), log_tail)


@pytest.mark.parametrize(
    ("found", "now_s", "past", "headline", "fraction"),
    [
        pytest.param([], 0, PAST, "Waiting for the model server's pod", 0.0, id="nothing-yet"),
        pytest.param(
            [("scheduled", 0), ("pulling image", 10)],
            40,
            PAST,
            "Pulling image: about 1 min 50 s left",  # 70 - 30 + 40 + 30
            40 / 150,
            id="under-way-with-eta",
        ),
        pytest.param(
            [("scheduled", 0), ("pulling image", 10)],
            110,
            PAST,
            "Pulling image: taking longer than usual (1 min 40 s so far, usually 1 min 10 s), "
            "then about 1 min 10 s",
            110 / 180,
            id="overdue",
        ),
        pytest.param(
            [("scheduled", 0), ("pulling image", 10), ("starting vLLM", 80)],
            100,
            [],
            "Starting vLLM (20 s so far)",
            2 / 9,
            id="no-past-loads",
        ),
        pytest.param(
            [("scheduled", 0), ("pulling image", 10), ("starting vLLM", 80), ("ready", 190)],
            500,
            PAST,
            "Ready after 3 min 10 s (predicted 2 min 30 s)",
            1.0,
            id="ready",
        ),
        pytest.param(
            [("scheduled", 0), ("ready", 190)],
            500,
            [],
            "Ready after 3 min 10 s",
            1.0,
            id="ready-no-prediction",
        ),
    ],
)
def test_headline_and_fraction(found, now_s, past, headline, fraction):
    v = view(found, now_s, past)
    assert v.headline == headline
    assert v.fraction == pytest.approx(fraction)
    assert v.ready == (headline.startswith("Ready"))


def test_rows_say_what_each_phase_took_and_what_was_predicted():
    v = view([("scheduled", 0), ("pulling image", 10), ("downloading weights", 95)], 100)
    assert v.rows == (
        PhaseRow("Scheduled", "done", "10 s", "10 s"),
        PhaseRow("Pulling image", "done", "1 min 25 s", "1 min 10 s"),
        PhaseRow("Starting vLLM", "skipped", "", "40 s"),
        PhaseRow("Downloading weights", "in progress", "5.0 s so far", ""),
        PhaseRow("Loading weights", "to do", "", "30 s"),
        *(PhaseRow(phase_label(p), "to do", "", "") for p in PHASES[5:]),
    )


@pytest.mark.parametrize(
    ("past", "gpu", "note"),
    [
        (
            PAST,
            "nvidia-l4",
            "Predicted from the median of the last 2 loads of this model on nvidia-l4.",
        ),
        (
            PAST[:1],
            "",
            "Predicted from the median of the last 1 load of this model on this GPU type.",
        ),
        ([], "nvidia-l4", "No finished load of this model on nvidia-l4 yet, so no prediction."),
    ],
)
def test_note_says_what_the_prediction_rests_on(past, gpu, note):
    assert view([("scheduled", 0)], 5, past, gpu).note == note


def test_log_tail_is_kept_as_text_and_short():
    lines = [f"line {n} ![x](http://127.0.0.2/img)" for n in range(50)]
    v = view([("scheduled", 0)], 5, log_tail=lines)
    assert v.log_tail == tuple(lines[-LOG_TAIL_LINES:])
