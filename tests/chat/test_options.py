"""Generation options without Streamlit: the settings table, the options object, what a
conversation saves and what of it is put back. One row per setting in each table."""

from __future__ import annotations

import dataclasses

import pytest

from webapp.chat.options import MODEL, GenerationOptions, knobs, restorable
from webapp.llm.chat import GenerationParams
from webapp.llm.prompts import Turn
from webapp.settings import Settings

SETTINGS = Settings(max_prompt_chars=100)
TABLE = knobs(SETTINGS)

#: one row per setting: its default's name in Settings, a value the sidebar can show, and
#: saved values it must not take back
VALUES = {
    "system_prompt": ("default_system_prompt", "Answer like a pirate.", [123, None, "s" * 101]),
    "temperature": ("default_temperature", 0.35, [2.5, -0.1, "hot", True, float("nan")]),
    "top_p": ("default_top_p", 0.8, [0.0, 1.5, "all"]),
    "max_tokens": ("default_max_tokens", 128, [0, 8193, 12.5, "lots", False]),
}
GOOD = {key: good for key, (_default, good, _bad) in VALUES.items()}


def test_every_setting_has_a_row_here_and_every_sampling_field_a_setting():
    assert [k.key for k in TABLE] == list(VALUES)
    params = {f.name for f in dataclasses.fields(GenerationParams)}
    assert params <= {k.key for k in TABLE}


def test_the_defaults_come_from_the_settings():
    assert {k.key: k.default for k in TABLE} == {
        key: getattr(SETTINGS, default) for key, (default, _good, _bad) in VALUES.items()
    }


@pytest.mark.parametrize("knob", TABLE, ids=lambda k: k.key)
def test_a_saved_value_within_bounds_is_restored_and_others_are_not(knob):
    _default, good, bad = VALUES[knob.key]
    assert knob.accepts(good) and knob.accepts(knob.default)
    assert restorable({knob.key: good}, TABLE) == {knob.key: good}
    for value in bad:
        assert not knob.accepts(value), value
        assert restorable({knob.key: value}, TABLE) == {}


@pytest.mark.parametrize(
    ("saved", "expected"),
    [
        (None, {}),
        ("not a mapping", {}),
        ({"unknown": 1, "temperature": 1.0}, {"temperature": 1.0}),
        ({MODEL: "m-two"}, {MODEL: "m-two"}),
        ({MODEL: "  "}, {}),
        ({MODEL: None}, {}),
        ({"max_tokens": 256.0}, {"max_tokens": 256}),  # JSON may give a whole float
        ({"temperature": 1}, {"temperature": 1.0}),  # or an int for a float
    ],
)
def test_restorable(saved, expected):
    got = restorable(saved, TABLE)
    assert got == expected
    assert [type(v) for v in got.values()] == [type(v) for v in expected.values()]


def test_options_from_the_sidebar_values_reach_the_request():
    opts = GenerationOptions.from_values(GOOD | {"max_tokens": 128.0}, "m", 4096)
    assert opts.params == GenerationParams(
        **{k: v for k, v in GOOD.items() if k != "system_prompt"}
    )
    assert isinstance(opts.params.max_tokens, int)
    req = opts.request([Turn("user", "hi")])
    assert (req.model, req.system, req.turns, req.params, req.max_model_len) == (
        "m", GOOD["system_prompt"], (Turn("user", "hi"),), opts.params, 4096
    )  # fmt: skip
    sampling = {k: v for k, v in GOOD.items() if k not in ("system_prompt", "max_tokens")}
    assert opts.params.sampling() == sampling


def test_what_is_saved_is_what_is_restored():
    opts = GenerationOptions.from_values(GOOD, "m-two")
    assert restorable(opts.saved(), TABLE) == GOOD | {MODEL: "m-two"}


def test_no_request_without_a_model():
    with pytest.raises(ValueError):
        GenerationOptions.from_values({"system_prompt": "s"}).request([])
