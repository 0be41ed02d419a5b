"""Finished model loads: stored per model and GPU type, newest first, checked on the way in
and on the way out (SQLite and PostgreSQL)."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import insert

from webapp.store import ConversationStore, StoreUnavailable
from webapp.store.loads import (
    LoadInProgress,
    ModelLoad,
    current_load,
    finish_load,
    past_loads,
    publish_load,
    record_load,
)
from webapp.store.models import model_loads

T0 = datetime(2026, 12, 1, 18, 0, 0)
PHASES = {"scheduled": 2.0, "pulling image": 30.5, "loading weights": 41.25, "ready": 0.0}


def load(model="qwen2-7b", gpu="nvidia-l4", start=T0, outcome="ready", **kw) -> ModelLoad:
    return ModelLoad(
        model=model,
        gpu_type=gpu,
        started_at=start,
        ready_at=kw.pop("ready_at", start + timedelta(seconds=74)),
        phases=kw.pop("phases", PHASES),
        outcome=outcome,
        **kw,
    )


def test_a_recorded_load_reads_back_as_stored(store):
    new_id = record_load(store, load())
    [got] = past_loads(store, "qwen2-7b", "nvidia-l4")
    assert got == load(id=new_id)
    assert got.phases == PHASES


def test_past_loads_are_the_newest_of_that_model_on_that_gpu_type(store):
    for minutes in range(5):
        record_load(store, load(start=T0 + timedelta(minutes=minutes)))
    record_load(store, load(model="llama-2-7b", start=T0 + timedelta(hours=1)))
    record_load(store, load(gpu="nvidia-tesla-a100", start=T0 + timedelta(hours=1)))
    record_load(store, load(start=T0 + timedelta(hours=2), outcome="failed", ready_at=None))

    got = past_loads(store, "qwen2-7b", "nvidia-l4", limit=3)
    assert [g.started_at for g in got] == [T0 + timedelta(minutes=m) for m in (4, 3, 2)]
    assert {(g.model, g.gpu_type, g.outcome) for g in got} == {("qwen2-7b", "nvidia-l4", "ready")}

    every = past_loads(store, "qwen2-7b", "nvidia-l4", outcome=None)
    assert len(every) == 6 and every[0].outcome == "failed" and every[0].ready_at is None
    assert past_loads(store, "qwen2-7b", "nvidia-l4", limit=0) == []
    assert past_loads(store, "mistral-7b", "nvidia-l4") == []


def test_aware_times_are_stored_as_naive_utc(store):
    plus2 = timezone(timedelta(hours=2))
    record_load(
        store,
        load(start=datetime(2026, 12, 1, 20, 0, tzinfo=plus2), ready_at=T0.replace(tzinfo=UTC)),
    )
    [got] = past_loads(store, "qwen2-7b", "nvidia-l4")
    assert (got.started_at, got.ready_at) == (T0, T0)


@pytest.mark.parametrize(
    ("bad", "says"),
    [
        ({"outcome": "exploded"}, "outcome must be one of"),
        ({"model": ""}, "model must have"),
        ({"model": "m" * 201}, "model must have"),
        ({"gpu": "g" * 101}, "gpu_type"),
        ({"phases": {"loading weights": -1.0}}, "finite number of seconds"),
        ({"phases": {"loading weights": math.nan}}, "finite number of seconds"),
        ({"phases": {"loading weights": math.inf}}, "finite number of seconds"),
        ({"phases": {"loading weights": "12"}}, "finite number of seconds"),
        ({"phases": {"loading weights": True}}, "finite number of seconds"),
        ({"phases": {"": 1.0}}, "phase names"),
        ({"phases": {"x" * 65: 1.0}}, "phase names"),
        ({"phases": {f"p{i}": 1.0 for i in range(33)}}, "at most 32 phases"),
        ({"ready_at": T0 - timedelta(seconds=1)}, "before started_at"),
    ],
)
def test_bad_loads_are_refused_and_nothing_is_stored(store, bad, says):
    with pytest.raises(ValueError, match=says):
        record_load(store, load(**bad))
    assert past_loads(store, load(**bad).model, load(**bad).gpu_type, outcome=None) == []


def test_phases_that_are_no_seconds_in_a_stored_row_are_dropped_on_reading(store):
    """A row written by hand (or a future version) cannot break the ETA or the page."""
    with store.migrated_engine().begin() as conn:
        conn.execute(
            insert(model_loads).values(
                model="qwen2-7b",
                gpu_type="nvidia-l4",
                started_at=T0,
                ready_at=None,
                phases={"loading weights": 12, "compiling": "soon", "ready": -3, "x": None},
                outcome="ready",
            )
        )
        conn.execute(
            insert(model_loads).values(
                model="qwen2-7b",
                gpu_type="nvidia-l4",
                started_at=T0 - timedelta(days=1),
                ready_at=None,
                phases=["not", "a", "mapping"],
                outcome="ready",
            )
        )
    newest, older = past_loads(store, "qwen2-7b", "nvidia-l4")
    assert newest.phases == {"loading weights": 12.0}
    assert older.phases == {}


def test_an_unusable_database_is_a_plain_store_unavailable():
    store = ConversationStore("postgresql://app:s3cr3t-pw@127.0.0.1:1/chat")
    with pytest.raises(StoreUnavailable) as err:
        record_load(store, load())
    with pytest.raises(StoreUnavailable):
        past_loads(store, "qwen2-7b", "nvidia-l4")
    assert "s3cr3t" not in str(err.value)


# ---------------------------------------------------------------- a load in progress


def progress(phase="loading weights", eta=40.0, at=T0, **kw) -> LoadInProgress:
    return LoadInProgress("qwen2-7b", "nvidia-l4", T0, phase, eta, at, **kw)


def test_a_published_load_is_the_current_one_until_it_is_finished(store):
    load_id = publish_load(store, progress("pulling image", None))
    assert publish_load(store, progress(at=T0 + timedelta(seconds=5), id=load_id)) == load_id
    now = T0 + timedelta(seconds=15)
    got = current_load(store, now=now)
    assert got == progress(at=T0 + timedelta(seconds=5), id=load_id)
    assert got.eta_at(now) == 30.0  # counted down since it was written
    assert got.eta_at(now + timedelta(minutes=5)) == 0.0
    assert past_loads(store, "qwen2-7b", "nvidia-l4") == []  # not a finished load
    assert finish_load(store, load_id, load()) == load_id
    assert current_load(store, now=now) is None
    assert past_loads(store, "qwen2-7b", "nvidia-l4") == [load(id=load_id)]


def test_a_load_not_updated_for_a_while_is_stale(store):
    publish_load(store, progress())
    assert current_load(store, max_age_s=30, now=T0 + timedelta(seconds=29)) is not None
    assert current_load(store, max_age_s=30, now=T0 + timedelta(seconds=31)) is None


def test_the_newest_load_in_progress_wins_and_a_finished_one_is_not_reopened(store):
    old = publish_load(store, progress("scheduled"))
    finish_load(store, old, load(outcome="failed"))
    # an update of a finished row does not bring it back: a new row is made
    again = publish_load(store, progress("compiling", 12.0, T0 + timedelta(seconds=2), id=old))
    assert again != old
    assert current_load(store, now=T0 + timedelta(seconds=3)).phase == "compiling"
    assert finish_load(store, None, load(outcome="cancelled")) not in (old, again)


@pytest.mark.parametrize(
    "bad",
    [
        progress(phase=""),
        progress(eta=-1.0),
        progress(eta=math.nan),
        LoadInProgress("", "nvidia-l4", T0, "compiling", None, T0),
        LoadInProgress("m" * 201, "nvidia-l4", T0, "compiling", None, T0),
    ],
)
def test_a_bad_load_in_progress_is_refused_and_nothing_is_stored(store, bad):
    with pytest.raises(ValueError):
        publish_load(store, bad)
    assert current_load(store, now=T0) is None
