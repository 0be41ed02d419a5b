"""The chat page's sentence for a load in progress."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from webapp.chat.switching import PLAIN_PHASES, about, switching_sentence, waking_sentence
from webapp.cluster.loading import PHASES
from webapp.store.loads import LoadInProgress

T0 = datetime(2026, 12, 2, 9, 0, 0)
MODEL = "Qwen2.5-7B-Instruct"


def load(phase="loading weights", eta=40.0) -> LoadInProgress:
    return LoadInProgress(MODEL, "nvidia-l4", T0, phase, eta, T0)


@pytest.mark.parametrize(
    ("phase", "eta", "after_s", "said"),
    [
        ("loading weights", 40.0, 0, "Switching to Qwen2.5-7B-Instruct: loading the weights, about 40 s left"),
        ("loading weights", 40.0, 15, "Switching to Qwen2.5-7B-Instruct: loading the weights, about 25 s left"),
        ("compiling", 40.0, 60, "Switching to Qwen2.5-7B-Instruct: compiling the model, almost ready"),
        ("scheduled", None, 5, "Switching to Qwen2.5-7B-Instruct: waiting for a GPU node"),
        ("pulling image", 150.0, 0, "Switching to Qwen2.5-7B-Instruct: pulling the model server's image, about 3 min left"),
        ("a phase of a newer version", 5.0, 0, "Switching to Qwen2.5-7B-Instruct: a phase of a newer version, about 5 s left"),
    ],
)  # fmt: skip
def test_the_sentence_says_model_phase_and_time_left(phase, eta, after_s, said):
    assert switching_sentence(load(phase, eta), T0 + timedelta(seconds=after_s)) == said


@pytest.mark.parametrize(
    ("seconds", "said"), [(0.2, "1 s"), (40, "40 s"), (59.4, "59 s"), (90, "2 min"), (3900, "1 h 05 min")]
)  # fmt: skip
def test_about(seconds, said):
    assert about(seconds) == said


def test_every_phase_has_plain_words():
    assert set(PLAIN_PHASES) == set(PHASES)


@pytest.mark.parametrize(
    ("condition", "since_s", "said"),
    [
        ("asleep", None, "Qwen2.5-7B-Instruct was asleep and is being woken: asking for a GPU"),
        ("asleep", 0.4, "Qwen2.5-7B-Instruct was asleep and is being woken: asking for a GPU"),
        ("loading", 42, "Qwen2.5-7B-Instruct was asleep and is being woken: starting the model server, 42 s so far"),
        ("loading", 130, "Qwen2.5-7B-Instruct was asleep and is being woken: starting the model server, 2 min so far"),
        ("unknown", 5, "Qwen2.5-7B-Instruct was not answering and is being woken: waiting for it to answer, 5 s so far"),
        ("a newer condition", None, "Qwen2.5-7B-Instruct was not answering and is being woken: waiting for it to answer"),
    ],
)  # fmt: skip
def test_the_waking_sentence_says_the_pools_condition_and_time(condition, since_s, said):
    assert waking_sentence(MODEL, condition, None, since_s) == said


def test_the_waking_sentence_says_the_published_load_of_that_model_only():
    said = waking_sentence(
        MODEL, "loading", load("loading weights", 40.0), 12, T0 + timedelta(seconds=15)
    )
    assert (
        said
        == "Qwen2.5-7B-Instruct was asleep and is being woken: loading the weights, about 25 s left"
    )
    other = LoadInProgress("another-model", "nvidia-l4", T0, "compiling", 5.0, T0)
    assert waking_sentence(MODEL, "loading", other, 12, T0).endswith(
        "starting the model server, 12 s so far"
    )
