import pytest

from webapp.llm.budget import (
    MIN_ANSWER_TOKENS,
    clamp_max_tokens,
    estimate_tokens,
    max_prompt_tokens,
    prompt_budget,
    trim_history,
)
from webapp.llm.errors import ContextOverflow
from webapp.llm.prompts import Turn

U, A = "user", "assistant"


def words(turns):
    return sum(len(t.content.split()) for t in turns)


def conv(*sizes):
    """Alternating user/assistant turns with the given word counts."""
    return [Turn(U if i % 2 == 0 else A, " ".join(["w"] * n)) for i, n in enumerate(sizes)]


@pytest.mark.parametrize(
    ("sizes", "budget", "kept", "dropped"),
    [
        ((5,), 10, (5,), 0),
        ((5, 5, 5), 15, (5, 5, 5), 0),
        ((5, 5, 5), 14, (5,), 2),  # dropping a question drops its answer too
        ((4, 4, 4, 4, 4), 12, (4, 4, 4), 2),
        ((10, 1, 1, 1, 3), 5, (1, 1, 3), 2),
        ((1, 1, 1, 1, 9), 9, (9,), 4),
    ],
)
def test_trim_history(sizes, budget, kept, dropped):
    result = trim_history(conv(*sizes), budget, words)
    assert tuple(len(t.content.split()) for t in result.turns) == kept
    assert result.dropped == dropped
    assert result.turns[0].role == U
    assert result.prompt_tokens <= budget


def test_trim_history_last_message_alone_too_long():
    with pytest.raises(ContextOverflow) as e:
        trim_history(conv(1, 1, 50), 10, words)
    assert e.value.prompt_tokens == 50 and e.value.limit == 10


@pytest.mark.parametrize(
    ("requested", "max_len", "expected"),
    [
        (512, 1024, 512),
        (5000, 1024, 1024 - MIN_ANSWER_TOKENS),
        (0, 1024, 1),
        (-3, 64, 1),
        (10, 8, 1),
    ],
)
def test_clamp_max_tokens(requested, max_len, expected):
    assert clamp_max_tokens(requested, max_len) == expected


@pytest.mark.parametrize(
    ("max_len", "max_tokens", "expected"), [(1024, 512, 512), (4096, 96, 4000)]
)
def test_prompt_budget(max_len, max_tokens, expected):
    assert prompt_budget(max_len, max_tokens) == expected


@pytest.mark.parametrize(
    ("text", "at_least"), [("", 4), ("abc", 5), ("é" * 30, 24), ("x" * 3000, 1004)]
)
def test_estimate_tokens_is_conservative(text, at_least):
    assert estimate_tokens(text) >= at_least


@pytest.mark.parametrize(
    ("system", "contents", "expected"),
    [
        ("", ["hi"], 2 + 16 * 2 + 128),
        ("sys", ["a", "bb"], 3 + 3 + 16 * 3 + 128),
        ("", ["é" * 10], 20 + 16 * 2 + 128),  # bytes, not characters
    ],
)
def test_max_prompt_tokens(system, contents, expected):
    turns = [Turn(U if i % 2 == 0 else A, c) for i, c in enumerate(contents)]
    assert max_prompt_tokens(system, turns) == expected


@pytest.mark.parametrize("text", ["hello world", "x" * 1000, "日本語のテキスト" * 20, "🙂" * 50])
def test_max_prompt_tokens_bounds_a_byte_level_count(text):
    # a byte-level tokenizer can at worst give one token per byte
    assert max_prompt_tokens("", [Turn(U, text)]) >= len(text.encode())
