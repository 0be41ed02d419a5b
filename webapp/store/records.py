"""What the store returns (immutable records) and the pure rules about them."""

from __future__ import annotations

import re
import secrets
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
MessageStatus = Literal["complete", "streaming", "stopped", "failed", "cut", "interrupted"]
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
    """Title from a first prompt: its first non-blank line, whitespace collapsed, cut on a word.

    Longer lines are cut at the last word boundary that fits and end with "…";
    a single over-long word is cut hard. Blank prompts give ``DEFAULT_TITLE``.
    """
    line = next((ln for ln in prompt.splitlines() if ln.strip()), "")
    line = " ".join(line.split())
    if not line:
        return DEFAULT_TITLE
    if len(line) <= max_chars:
        return line
    room = max_chars - 1  # keep one character for the ellipsis
    cut = line[:room]
    if line[room] != " " and " " in cut:
        cut = cut[: cut.rfind(" ")]
    return cut.rstrip(" .,;:-") + "…"


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
