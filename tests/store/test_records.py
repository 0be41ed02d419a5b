"""Pure rules of the store: titles from the first prompt, conversation id shape."""

from __future__ import annotations

import pytest

from webapp.store.records import (
    DEFAULT_TITLE,
    is_valid_conversation_id,
    new_conversation_id,
    short_title,
    title_from_prompt,
)


@pytest.mark.parametrize(
    ("prompt", "title"),
    [
        ("Hello", "Hello"),
        ("  Hello   world  ", "Hello world"),
        ("\n\n  \nSecond line wins\nthird", "Second line wins"),
        ("", DEFAULT_TITLE),
        ("   \n\t\n", DEFAULT_TITLE),
        ("x" * 60, "x" * 60),
        ("x" * 61, "x" * 59 + "…"),
        ("word " * 20, " ".join(["word"] * 12) + "…"),
        (
            "Explain the difference between TCP and UDP, please, in detail",
            ("Explain the difference between TCP and UDP, please, in…"),
        ),
        ("tab\tseparated\twords", "tab separated words"),
        # markdown is markup, not title: the words stay, the formatting goes
        ("Why is **this** `code` so _slow_?", "Why is this code so slow?"),
        ("# Heading\nbody", "Heading"),
        ("> quoted *and* ~~struck~~ ***both***", "quoted and struck both"),
        ("- item one", "item one"),
        ("1. first step", "first step"),
        ("See [the docs](http://x.example/a) and ![logo](x.png)", "See the docs and logo"),
        ("```python\nprint(1)\n```\nwhat does it print?", "print(1)"),
        ("``` \n\n", DEFAULT_TITLE),
        # ...but what only looks like markup is kept
        ("fix my_snake_case_name", "fix my_snake_case_name"),
        ("what is 2*3?", "what is 2*3?"),
        ("<b>not html</b>", "<b>not html</b>"),
        # control and invisible format characters never reach a title
        ("bell\x07 and\x1b[31m escape", "bell and [31m escape"),
        ("abc\u202eevil\u200b zero", "abcevil zero"),
        ("family 👨\u200d👩\u200d👧", "family 👨\u200d👩\u200d👧"),
    ],
)
def test_title_from_prompt(prompt, title):
    assert title_from_prompt(prompt) == title
    assert len(title_from_prompt(prompt)) <= 60


@pytest.mark.parametrize(
    ("title", "short"),
    [
        ("Renamed", "Renamed"),
        ("  spaced \n out  ", "spaced out"),
        ("**kept as typed**", "**kept as typed**"),  # a title the user typed is not rewritten
        ("rtl\u202e override", "rtl override"),
        ("word " * 30, " ".join(["word"] * 12) + "…"),
        ("", ""),
    ],
)
def test_short_title(title, short):
    assert short_title(title) == short


@pytest.mark.parametrize(
    ("value", "valid"),
    [
        (None, False),
        ("", False),
        ("a" * 15, False),
        ("a" * 16, True),
        ("A-z_0" * 4, True),
        ("a" * 64, True),
        ("a" * 65, False),
        ("a" * 20 + "/", False),
        ("a" * 20 + "%", False),
    ],
)
def test_conversation_id_shape(value, valid):
    assert is_valid_conversation_id(value) is valid


def test_new_ids_are_valid():
    assert is_valid_conversation_id(new_conversation_id())
