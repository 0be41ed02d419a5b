"""Fitting the conversation into the model's context window (pure functions)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from webapp.llm.errors import ContextOverflow
from webapp.llm.prompts import Turn

#: tokens always left for the answer, even when the user asks for fewer
MIN_ANSWER_TOKENS = 16


@dataclass(frozen=True)
class Trimmed:
    """The turns that fit and how many older turns were left out."""

    turns: tuple[Turn, ...]
    dropped: int
    prompt_tokens: int


def estimate_tokens(text: str) -> int:
    """Conservative token estimate when the server cannot tokenize for us.

    Sub-word tokenizers average 3-4 bytes per token on English; 3 keeps us on
    the safe side. A small per-message overhead covers role markers.
    """
    return math.ceil(len(text.encode("utf-8")) / 3) + 4


#: chat templates add role markers per message and sometimes a default system text
#: (Llama 3.1's date header, Qwen's identity line): generous bounds for both
TEMPLATE_TOKENS_PER_MESSAGE = 16
TEMPLATE_TOKENS_FIXED = 128


def max_prompt_tokens(system: str, turns: Sequence[Turn]) -> int:
    """An upper bound on the prompt's token count that needs no tokenizer.

    Every token of a (byte-level BPE or SentencePiece) tokenizer covers at least one
    byte, so a text never has more tokens than UTF-8 bytes; templates add a bounded
    number of marker tokens. When this bound fits, counting exactly is not needed.
    """
    text_bytes = len(system.encode("utf-8")) + sum(len(t.content.encode("utf-8")) for t in turns)
    return text_bytes + TEMPLATE_TOKENS_PER_MESSAGE * (len(turns) + 1) + TEMPLATE_TOKENS_FIXED


def clamp_max_tokens(requested: int, max_model_len: int) -> int:
    """max_tokens within [1, max_model_len - MIN_ANSWER_TOKENS] (at least 1)."""
    upper = max(1, max_model_len - MIN_ANSWER_TOKENS)
    return max(1, min(int(requested), upper))


def prompt_budget(max_model_len: int, max_tokens: int) -> int:
    """Tokens available to the prompt once the answer's max_tokens is reserved."""
    return max_model_len - max_tokens


def trim_history(
    turns: Sequence[Turn],
    budget: int,
    count_tokens: Callable[[Sequence[Turn]], int],
) -> Trimmed:
    """Drop the oldest turns until ``count_tokens(turns) <= budget``.

    Turns are dropped oldest first and a leading assistant turn is never left
    without its question. The newest user turn is always kept; if it alone does
    not fit, ``ContextOverflow`` is raised (the user must shorten it).
    """
    if not turns:
        raise ValueError("no turns to send")
    kept = list(turns)
    dropped = 0
    while True:
        used = count_tokens(kept)
        if used <= budget:
            return Trimmed(tuple(kept), dropped, used)
        if len(kept) == 1:
            raise ContextOverflow(
                "the message alone does not fit the context window",
                prompt_tokens=used,
                limit=budget,
            )
        kept.pop(0)
        dropped += 1
        # never start the history with an answer whose question is gone
        while len(kept) > 1 and kept[0].role == "assistant":
            kept.pop(0)
            dropped += 1
