"""Plain-language messages for every typed error (no traceback text, says what to do)."""

import pytest

from webapp.chat.messages import (
    answer_note,
    busy_message,
    display_title,
    llm_error_message,
    stats_line,
)
from webapp.llm import errors as E


@pytest.mark.parametrize(
    ("err", "must_contain"),
    [
        (E.EmptyPrompt(), "empty"),
        (E.ContextOverflow("x", prompt_tokens=5000, limit=512), "5,000 tokens"),
        (E.ContextOverflow("x"), "context window"),
        (E.StreamInterrupted("x", partial_text="abc"), "part received is kept"),
        (E.BackendUnreachable("[Errno 111] Connection refused"), "cannot be reached"),
        (E.BackendTimeout("x"), "did not answer in time"),
        (E.BackendAuthError(401, "x"), "LLM_API_KEY"),
        (E.ModelNotFound(404, "x"), "no longer served"),
        (E.ChatTemplateMissing(400, "x"), "chat template"),
        (E.BackendHTTPError(429, "x"), "busy"),
        (E.BackendHTTPError(502, "x"), "HTTP 502"),
        (E.BackendHTTPError(400, "top_p must be in (0, 1]"), "top_p must be"),
        (E.LLMError("weird"), "Retry"),
    ],
)
def test_llm_error_message(err, must_contain):
    msg = llm_error_message(err)
    assert must_contain in msg
    assert "Traceback" not in msg and "Errno" not in msg


@pytest.mark.parametrize(
    ("status", "ended", "expected"),
    [
        ("complete", None, None),
        ("complete", "app", None),
        ("failed", None, None),
        ("stopped", None, "Stopped"),
        ("cut", None, "Max answer tokens"),
        ("interrupted", None, "connection dropped"),
        ("interrupted", "app", "the app restarted or the page was closed"),
        ("streaming", None, "Still being written"),
    ],
)
def test_answer_note(status, ended, expected):
    note = answer_note(status, ended=ended)
    assert (note is None) if expected is None else (expected in note)


@pytest.mark.parametrize(
    ("meta", "expected"),
    [
        (
            {
                "completion_tokens": 12,
                "usage_source": "server",
                "ttft_s": 0.2,
                "tokens_per_s": 30.0,
            },
            "12 tokens · first token 0.20 s · 30.0 tokens/s",
        ),
        ({"completion_tokens": 5, "usage_source": "counted"}, "≈5 tokens"),
        ({"completion_tokens": 5, "usage_source": "server", "model": "m"}, "5 tokens · m"),
        ({"completion_tokens": 1, "usage_source": "server"}, "1 token"),
        (
            {"completion_tokens": 2, "usage_source": "server", "model": "![m](http://x.example)"},
            "2 tokens · \\!\\[m\\]\\(http\\:\\/\\/x\\.example\\)",
        ),
        ({"completion_tokens": 0, "usage_source": "server"}, "0 tokens"),
    ],
)
def test_stats_line(meta, expected):
    assert stats_line(meta) == expected


@pytest.mark.parametrize(
    ("title", "shown"),
    [
        ("plain words", "plain words"),
        ("**bold** `code`", r"\*\*bold\*\* \`code\`"),
        ("# not a heading", r"\# not a heading"),
        ("[link](http://x)", r"\[link\]\(http\:\/\/x\)"),
        (":red[red] :material/home: $x$", r"\:red\[red\] \:material\/home\: \$x\$"),
        ("<b>b</b> a\\b", r"\<b\>b\<\/b\> a\\b"),
        ("word " * 30, " ".join(["word"] * 12) + "…"),
        ("zero\u200bwidth", "zerowidth"),
    ],
)
def test_display_title_is_markdown_that_shows_the_text_as_typed(title, shown):
    assert display_title(title) == shown


@pytest.mark.parametrize(
    ("ahead", "expected"),
    [
        (None, "Waiting for the model…"),
        (0, "Waiting for the model…"),
        (1, "The model is busy: 1 request ahead of yours."),
        (3, "The model is busy: 3 requests ahead of yours."),
        (1200, "The model is busy: 1,200 requests ahead of yours."),
    ],
)
def test_busy_message(ahead, expected):
    assert expected in busy_message(ahead)
