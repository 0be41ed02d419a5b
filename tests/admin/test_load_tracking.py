"""The switch's load tracker: the view on each look, the load in progress for the chat,
the finished load for the next prediction; an unusable store never stops it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from webapp.admin.load_tracking import LoadTracker
from webapp.cluster.loading import merge
from webapp.cluster.pod_load import PodLoad
from webapp.store import ConversationStore
from webapp.store.loads import current_load, past_loads

T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
MODEL, GPU = "qwen2.5-7b-instruct", "nvidia-l4"
STEPS = [("scheduled", 0), ("pulling image", 10), ("starting vLLM", 40), ("loading weights", 60)]


def pod_load(found, now_s) -> PodLoad:
    at = [(p, T0 + timedelta(seconds=s)) for p, s in found]
    return PodLoad("vllm-1", GPU, merge(at, now=T0 + timedelta(seconds=now_s)))


@pytest.fixture
def store(tmp_path):
    return ConversationStore(f"sqlite:///{tmp_path / 'loads.db'}")


def test_a_load_is_published_while_it_runs_and_recorded_once_ready(store):
    loads = LoadTracker(store, MODEL)
    view = loads.look(pod_load(STEPS, 70))
    assert view.headline == "Loading weights (10 s so far)"  # no past load: no ETA
    now = current_load(store)
    assert (now.model, now.gpu_type, now.phase, now.eta_s) == (MODEL, GPU, "loading weights", None)
    done = pod_load([*STEPS, ("ready", 100)], 101)
    assert loads.look(done).headline == "Ready after 1 min 40 s"
    loads.look(done)  # a later look records nothing more
    loads.finish("ready")
    assert current_load(store) is None
    [stored] = past_loads(store, MODEL, GPU)
    assert stored.phases["loading weights"] == 40.0 and stored.ready_at is not None

    # the next load of the model predicts from it
    again = LoadTracker(store, MODEL)
    view = again.look(pod_load(STEPS, 70))
    assert view.headline == "Loading weights: about 30 s left"
    assert current_load(store).eta_s == 30.0


@pytest.mark.parametrize("outcome", ["failed", "cancelled"])
def test_a_load_that_ends_early_is_recorded_with_its_outcome(store, outcome):
    loads = LoadTracker(store, MODEL)
    loads.look(pod_load(STEPS, 70))
    loads.finish(outcome)
    loads.finish("failed")  # the switch's own last word changes nothing
    assert current_load(store) is None
    [stored] = past_loads(store, MODEL, GPU, outcome=None)
    assert stored.outcome == outcome and stored.ready_at is None
    assert past_loads(store, MODEL, GPU) == []  # not a prediction for the next load


def test_a_switch_without_a_pod_load_records_nothing(store):
    LoadTracker(store, MODEL).finish("failed")
    assert past_loads(store, MODEL, GPU, outcome=None) == []


@pytest.mark.parametrize(
    "store", [None, ConversationStore("postgresql://app:s3cr3t-pw@127.0.0.1:1/chat")]
)
def test_without_a_usable_store_the_phases_still_show(store, caplog):
    loads = LoadTracker(store, MODEL)
    assert loads.look(pod_load(STEPS, 70)).headline == "Loading weights (10 s so far)"
    loads.finish("ready")
    assert "s3cr3t" not in caplog.text
