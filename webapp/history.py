"""The chat page's persistence: one user's conversations in the store, with limits.

A thin facade over ``ConversationStore`` and ``UsageLimits`` that the chat view
calls. When the database is down the chat keeps working in the browser session:
write methods record the failure in ``problem`` instead of raising, so a user
never loses the conversation on screen because a save failed.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from webapp.identity import Owner
from webapp.limits import GenerationLease, UsageLimits
from webapp.store import (
    Conversation,
    ConversationStore,
    ConversationSummary,
    StoreUnavailable,
)

#: how often a streaming answer is written to the database; a killed process
#: loses at most this much of an answer
CHECKPOINT_EVERY_S = 1.0


@dataclass
class History:
    """The current user's view of the store. Create one per script run (it is cheap)."""

    store: ConversationStore
    limits: UsageLimits
    owner: Owner
    problem: str | None = None
    pruned: int = 0
    _last_checkpoint: dict[int, float] = field(default_factory=dict)

    # ---- reading (errors propagate: the view decides what to say) ----------------
    def conversations(
        self, include_ids: Sequence[str] = (), limit: int = 50
    ) -> list[ConversationSummary]:
        """The user's conversations, most recently active first (empty when the DB is down)."""
        try:
            return self.store.list_conversations(self.owner.key, limit, include_ids=include_ids)
        except StoreUnavailable as e:
            self.problem = str(e)
            return []

    def open(self, conversation_id: str, *, sweep: bool = False) -> Conversation:
        """One conversation with its messages; ``ConversationNotFound`` if not the user's.

        ``sweep`` first marks answers whose writer died (no checkpoint for a while) as
        interrupted; the page does that when it loads a conversation, not on every rerun.
        """
        if sweep:
            self.store.mark_interrupted()
        return self.store.get_conversation(self.owner.key, conversation_id)

    # ---- writing -------------------------------------------------------------------
    def start(self, chat_settings: dict[str, Any] | None = None) -> str | None:
        """A new conversation for the first message; None when the DB is down."""
        try:
            conv = self.store.create_conversation(
                self.owner.key,
                chat_settings=chat_settings,
                max_conversations=self.limits.max_conversations,
            )
        except StoreUnavailable as e:
            self.problem = str(e)
            return None
        self.pruned = len(conv.pruned or ())
        return conv.id

    def admit_message(self, prompt: str) -> None:
        """Enforce the prompt-length and rate limits (raises ``LimitExceeded``)."""
        self.limits.check_prompt(prompt)
        try:
            self.limits.record_message(self.owner.key)
        except StoreUnavailable as e:
            self.problem = str(e)  # cannot count: let the message through rather than lose it

    def add(self, conversation_id: str | None, role: str, content: str, status: str = "complete",
            meta: dict[str, Any] | None = None) -> int | None:  # fmt: skip
        """Save a message; returns its id (None when not saved)."""
        if conversation_id is None:
            return None
        try:
            return self.store.add_message(
                self.owner.key, conversation_id, role, content, status, meta
            )
        except StoreUnavailable as e:
            self.problem = str(e)
            return None

    def begin_answer(self, conversation_id: str | None, content: str) -> int | None:
        """Save an answer when its first token arrives (status "streaming").

        Not before: a row written before the request would delay the first token, and
        an answer that never started has nothing to keep.
        """
        message_id = self.add(conversation_id, "assistant", content, "streaming")
        if message_id is not None:
            self._last_checkpoint[message_id] = time.monotonic()
        return message_id

    def checkpoint(self, message_id: int | None, content: str, *, force: bool = False) -> None:
        """Save the answer so far, at most every ``CHECKPOINT_EVERY_S`` unless forced."""
        if message_id is None:
            return
        now = time.monotonic()
        if not force and now - self._last_checkpoint.get(message_id, 0.0) < CHECKPOINT_EVERY_S:
            return
        self._last_checkpoint[message_id] = now
        self.update(message_id, content=content)

    def update(self, message_id: int | None, **changes: Any) -> None:
        """Change a saved message (content, status, meta)."""
        if message_id is None:
            return
        try:
            self.store.update_message(self.owner.key, message_id, **changes)
        except StoreUnavailable as e:
            self.problem = str(e)

    def truncate_after(self, conversation_id: str | None, message_id: int | None) -> None:
        """Delete what follows ``message_id`` (regenerate replaces the last answer)."""
        if conversation_id is None or message_id is None:
            return
        try:
            self.store.truncate_after(self.owner.key, conversation_id, message_id)
        except StoreUnavailable as e:
            self.problem = str(e)

    def rename(self, conversation_id: str, title: str) -> str:
        return self.store.rename(self.owner.key, conversation_id, title)

    def delete(self, conversation_id: str) -> None:
        self.store.delete(self.owner.key, conversation_id)

    # ---- one answer at a time per user ---------------------------------------------
    def acquire(self) -> GenerationLease | None:
        """The user's single generation slot (``GenerationInProgress`` if taken)."""
        try:
            return self.limits.acquire_generation(self.owner.key)
        except StoreUnavailable as e:
            self.problem = str(e)
            return None

    def release(self, lease: GenerationLease | None) -> None:
        if lease is None:
            return
        try:
            self.limits.release_generation(lease)
        except StoreUnavailable as e:
            self.problem = str(e)


def message_dicts(conv: Conversation) -> list[dict[str, Any]]:
    """Stored messages in the shape the chat page keeps in its session state."""
    out = []
    for m in conv.messages:
        if m.role == "system":
            continue
        meta = dict(m.meta or {})
        out.append(
            {
                "id": m.id,
                "role": m.role,
                "content": m.content,
                "status": m.status,
                "meta": meta,
                "error": meta.get("error"),
                "reasoning": meta.get("reasoning"),
            }
        )
    return out
