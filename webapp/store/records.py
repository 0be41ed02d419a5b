"""What the store returns (immutable records) and the pure rules about them."""

from __future__ import annotations

import re
import secrets
import unicodedata
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

Role = Literal["system", "user", "assistant"]
ROLES: frozenset[str] = frozenset({"system", "user", "assistant"})

# complete    the answer finished normally
# streaming   being generated right now (checkpointed as tokens arrive)
# stopped     the user pressed stop; the partial text is kept
# failed      the server or the connection failed; the partial text is kept, meta["error"] says why
# cut         finish_reason "length": the answer hit max_tokens
# interrupted it was streaming when its process died (set by mark_interrupted)
STATUSES: frozenset[str] = frozenset(
    {"complete", "streaming", "stopped", "failed", "cut", "interrupted"}
)

DEFAULT_TITLE = "New conversation"
TITLE_MAX_CHARS = 60
_ID_RE = re.compile(r"[A-Za-z0-9_-]{16,64}")


def new_conversation_id() -> str:
    """A fresh unguessable conversation id (128 random bits, URL-safe): it is a capability."""
    return secrets.token_urlsafe(16)


def is_valid_conversation_id(value: str | None) -> bool:
    """Whether ``value`` has the shape of a conversation id (cheap check before any query)."""
    return bool(value) and _ID_RE.fullmatch(value) is not None


def title_from_prompt(prompt: str, max_chars: int = TITLE_MAX_CHARS) -> str:
    """Title from a first prompt: its first line with words, as plain text, cut on a word.

    A title is a name for the conversation, not a copy of the prompt: markdown markup
    (emphasis, code ticks, heading / quote / list markers, link syntax, code fences) is
    dropped and the words kept; what only looks like markup (``my_var``, ``2*3``) stays.
    Then ``short_title``. Blank prompts give ``DEFAULT_TITLE``.
    """
    for line in prompt.splitlines():
        if _FENCE.match(line):
            continue
        title = short_title(_without_markdown(_without_controls(line)), max_chars)
        if title:
            return title
    return DEFAULT_TITLE


def short_title(text: str, max_chars: int = TITLE_MAX_CHARS) -> str:
    """One line of plain text of at most ``max_chars``: control and invisible format
    characters (bidi overrides, zero-width spaces) dropped, whitespace collapsed.

    Longer lines are cut at the last word boundary that fits and end with "…";
    a single over-long word is cut hard. The text is not otherwise rewritten, so a
    title the user typed stays as typed.
    """
    line = " ".join(_without_controls(text).split())
    if len(line) <= max_chars:
        return line
    room = max_chars - 1  # keep one character for the ellipsis
    cut = line[:room]
    if line[room] != " " and " " in cut:
        cut = cut[: cut.rfind(" ")]
    return cut.rstrip(" .,;:-") + "…"


_FENCE = re.compile(r"^\s*(```|~~~)")
_LINE_MARKERS = re.compile(r"^\s*(?:(?:#{1,6}|>|[-*+]|\d{1,9}[.)])(?:\s+|$))+")
_LINK = re.compile(r"!?\[([^\]]*)\]\([^)]*\)")
_EMPHASIS = re.compile(
    r"(\*{1,3}|~~)(?=\S)(.+?)(?<=\S)\1"  # *a*, **a**, ***a***, ~~a~~
    r"|(?<!\w)(_{1,3})(?=\S)(.+?)(?<=\S)\3(?!\w)"  # _a_, __a__ (not snake_case)
)
_ZWJ = "\u200d"  # joins emoji sequences (family, flags): keep it


def _without_markdown(line: str) -> str:
    line = _LINE_MARKERS.sub("", line)
    line = _LINK.sub(r"\1", line).replace("`", "")
    for _ in range(3):  # nested emphasis, e.g. **a *b* c**
        line = _EMPHASIS.sub(lambda m: m.group(2) or m.group(4), line)
    return line


def _without_controls(text: str) -> str:
    """Control characters become spaces; format characters (Cf) go, except the emoji ZWJ."""
    return "".join(
        " " if unicodedata.category(ch) == "Cc" else ch
        for ch in text
        if ch == _ZWJ or unicodedata.category(ch) != "Cf"
    )


def utcnow() -> datetime:
    """Current time as naive UTC, the representation stored in the database."""
    return datetime.now(UTC).replace(tzinfo=None)


@dataclass(frozen=True)
class Message:
    """One message of a conversation. ``meta`` holds model, tokens, ttft_ms, tokens_per_s, error."""

    id: int
    role: str
    content: str
    status: str
    meta: dict[str, Any]
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class ConversationSummary:
    """A line of the sidebar: id, title and times (naive UTC)."""

    id: str
    title: str
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class Conversation:
    """A conversation with its messages in order.

    ``is_owner`` is whether the viewer who opened it owns it (may rename/delete it) or
    reached it as an anonymous user through its URL. ``pruned`` is only set by
    ``create_conversation``: the oldest conversations deleted to stay within the limit.
    """

    id: str
    title: str
    created_at: datetime
    updated_at: datetime
    chat_settings: dict[str, Any] | None
    is_owner: bool
    messages: tuple[Message, ...] = ()
    pruned: tuple[ConversationSummary, ...] = field(default=())
