"""AppTest of the loading section: what it draws, and untrusted text drawn literally."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from streamlit.testing.v1 import AppTest

from webapp.admin.loading import load_view
from webapp.cluster.loading import estimate, merge
from webapp.ui.text import literal

T0 = datetime(2026, 12, 1, 18, 20, tzinfo=UTC)
IMG = "![x](http://127.0.0.2:9/img?d=secret)"
PAST = [{"scheduled": 10.0, "pulling image": 70.0, "starting vLLM": 40.0}]


def _draw(view):
    from webapp.admin.ui.loading import loading_section

    loading_section(view)


def _view(found, now_s, model="qwen2.5-7b-instruct", log_tail=()):
    progress = merge(
        [(p, T0 + timedelta(seconds=s)) for p, s in found], now=T0 + timedelta(seconds=now_s)
    )
    return load_view(model, "nvidia-l4", progress, estimate(progress, PAST), log_tail)


def run(view) -> AppTest:
    at = AppTest.from_function(_draw, args=(view,), default_timeout=30)
    at.run()
    assert not at.exception
    return at


def test_a_load_under_way_shows_phase_eta_progress_and_table():
    at = run(_view([("scheduled", 0), ("pulling image", 10)], 40))
    assert at.subheader[0].value == literal("Loading qwen2.5-7b-instruct on nvidia-l4")
    assert at.info[0].value == literal("Pulling image: about 1 min 20 s left")
    assert at.get("progress")[0].value == 33  # 40 s of 120 s
    table = at.dataframe[0].value
    assert list(table.columns) == ["phase", "state", "took", "predicted"]
    assert table.iloc[0].tolist() == ["Scheduled", "done", "10 s", "10 s"]
    assert table.iloc[1].tolist() == ["Pulling image", "in progress", "30 s so far", "1 min 10 s"]
    assert table.iloc[2].tolist() == ["Starting vLLM", "to do", "", "40 s"]
    assert len(table) == 10
    assert "median of the last 1 load" in at.caption[0].value
    assert not at.success


def test_a_finished_load_shows_actual_against_predicted():
    at = run(_view([("scheduled", 0), ("pulling image", 10), ("ready", 150)], 900))
    assert at.success[0].value == literal("Ready after 2 min 30 s (predicted 2 min 00 s)")
    assert at.get("progress")[0].value == 100
    assert not at.info


def test_model_name_and_log_lines_are_drawn_literally():
    log = [f"INFO 12-01 18:20:01 [x.py:1] {IMG} **bold** :red[red]"]
    at = run(_view([("scheduled", 0)], 5, model=f"evil {IMG}", log_tail=log))
    heading = at.subheader[0].value
    assert "![" not in heading and heading == literal(f"Loading evil {IMG} on nvidia-l4")
    assert at.code[0].value == log[0]  # a code block: shown as typed, never rendered
    assert at.code[0].language == "plaintext"
