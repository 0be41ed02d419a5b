"""Markdown and JSON export of a conversation (pure functions)."""

from __future__ import annotations

import json
from datetime import datetime

import pytest

from webapp.chat.export import EXPORT_FORMAT, filename_for_title, to_json, to_markdown
from webapp.store.records import Conversation, Message

T0 = datetime(2025, 3, 1, 12, 0, 0)
T1 = datetime(2025, 3, 1, 12, 5, 30)


def _msg(i, role, content, status="complete", meta=None):
    return Message(i, role, content, status, meta or {}, T0, T1)


def _conv(*messages, title="Bread 🍞", chat_settings=None):
    return Conversation("c" * 22, title, T0, T1, chat_settings, True, tuple(messages))


def test_json_has_a_stable_versioned_schema():
    conv = _conv(
        _msg(1, "user", "How?"),
        _msg(2, "assistant", "Knead.", "cut", {"model": "tiny", "tokens": 3}),
        chat_settings={"temperature": 0.5},
    )
    data = json.loads(to_json(conv))
    assert data == {
        "format": EXPORT_FORMAT,
        "version": 1,
        "id": "c" * 22,
        "title": "Bread 🍞",
        "created": "2025-03-01T12:00:00Z",
        "updated": "2025-03-01T12:05:30Z",
        "settings": {"temperature": 0.5},
        "messages": [
            {
                "role": "user",
                "content": "How?",
                "status": "complete",
                "created": "2025-03-01T12:00:00Z",
                "meta": {},
            },
            {
                "role": "assistant",
                "content": "Knead.",
                "status": "cut",
                "created": "2025-03-01T12:00:00Z",
                "meta": {"model": "tiny", "tokens": 3},
            },
        ],
    }
    assert "🍞" in to_json(conv)  # UTF-8, not \u escapes


@pytest.mark.parametrize(
    ("message", "expected", "absent"),
    [
        (_msg(1, "user", "Hi"), ["### You", "Hi"], ["> _"]),
        (_msg(1, "system", "Be nice"), ["### System", "Be nice"], []),
        (
            _msg(1, "assistant", "Hel", "stopped"),
            ["### Assistant", "Hel", "stopped by the user; partial text"],
            [],
        ),
        (
            _msg(1, "assistant", "Hel", "failed", {"error": "Server gone\naway"}),
            ["failed; partial text", "> Error: Server gone away"],
            [],
        ),
        (_msg(1, "assistant", "long", "cut"), ["maximum length"], []),
        (_msg(1, "assistant", "par", "interrupted"), ["interrupted"], []),
        (_msg(1, "assistant", "", "failed"), ["_(empty)_"], []),
        (
            _msg(1, "assistant", "Ok", meta={"model": "m7", "tokens": 5, "tokens_per_s": 12.345}),
            ["<sub>model m7, 5 tokens, 12.3 tokens/s</sub>"],
            ["> _"],
        ),
    ],
)
def test_markdown_sections(message, expected, absent):
    md = to_markdown(_conv(message))
    assert md.startswith("# Bread 🍞\n\n_Exported conversation, started 2025-03-01T12:00:00Z._\n")
    for text in expected:
        assert text in md
    for text in absent:
        assert text not in md


def test_markdown_keeps_message_order():
    md = to_markdown(_conv(_msg(1, "user", "first"), _msg(2, "assistant", "second")))
    assert md.index("first") < md.index("second")


@pytest.mark.parametrize(
    ("title", "ext", "name"),
    [
        ("How to bake bread?", "md", "how-to-bake-bread.md"),
        ("../../etc/passwd", ".json", "etc-passwd.json"),
        ("🍞🍞", "md", "conversation.md"),
        ("a" * 80, "md", "a" * 50 + ".md"),
    ],
)
def test_export_file_name_is_safe(title, ext, name):
    assert filename_for_title(title, ext) == name
