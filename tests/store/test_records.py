"""Pure rules of the store: titles from the first prompt, conversation id shape."""

from __future__ import annotations

import pytest

from webapp.store.records import (
    DEFAULT_TITLE,
    is_valid_conversation_id,
    new_conversation_id,
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
    ],
)
def test_title_from_prompt(prompt, title):
    assert title_from_prompt(prompt) == title
    assert len(title_from_prompt(prompt)) <= 60


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
