"""The chat page's persistence: one user's conversations in the store, with limits.

A thin facade over ``ConversationStore`` and ``UsageLimits`` that the chat view
calls. When the database is down the chat keeps working in the browser session:
write methods record the failure in ``problem`` instead of raising, so a user
never loses the conversation on screen because a save failed.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
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

#: a streaming answer is written to the database behind the stream, as soon as the
#: previous write finished but at most this often: a killed process loses only the
#: tokens received in the last write's time plus this interval
CHECKPOINT_EVERY_S = 0.2
#: an answer whose text does not change (a model still "thinking") is still touched
#: this often, so other sessions do not take it for abandoned (see mark_interrupted)
HEARTBEAT_EVERY_S = 5.0


class AnswerSaver:
    """Writes the newest text of one streaming answer from a background thread.

    The stream never waits for the database: ``offer`` only hands over the text. The
    thread writes the newest text it has whenever it changed (or a heartbeat is due),
    at most every ``min_interval_s``; older texts offered meanwhile are skipped.
    ``close`` waits for a write in progress, so a final write after it cannot be
    overtaken by a stale one. ``write`` must not raise (History.update records).
    """

    def __init__(
        self,
        write: Callable[[str], None],
        *,
        min_interval_s: float = CHECKPOINT_EVERY_S,
        heartbeat_s: float = HEARTBEAT_EVERY_S,
    ) -> None:
        self._write = write
        self._min_interval_s = min_interval_s
        self._heartbeat_s = heartbeat_s
        self._cond = threading.Condition()
        self._latest: str | None = None
        self._closed = False
        self.writes = 0
        self._thread = threading.Thread(target=self._run, name="answer-saver", daemon=True)
        self._thread.start()

    def offer(self, content: str) -> None:
        with self._cond:
            self._latest = content
            self._cond.notify()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join()

    def _run(self) -> None:
        written: str | None = None
        last_write = time.monotonic()
        while True:
            with self._cond:
                while not self._closed:
                    due = last_write + self._heartbeat_s - time.monotonic()
                    if self._latest is not None and (self._latest != written or due <= 0):
                        break
                    self._cond.wait(timeout=max(due, 0.01) if self._latest is not None else None)
                if self._closed:
                    return
                content = self._latest
            self._write(content)
            self.writes += 1
            written, last_write = content, time.monotonic()
            with self._cond:
                self._cond.wait_for(lambda: self._closed, timeout=self._min_interval_s)


@dataclass
class History:
    """The current user's view of the store. Create one per script run (it is cheap)."""

    store: ConversationStore
    limits: UsageLimits
    owner: Owner
    problem: str | None = None
    pruned: int = 0
    _savers: dict[int, AnswerSaver] = field(default_factory=dict)

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
        an answer that never started has nothing to keep. From then on ``checkpoint``
        hands the growing text to a background writer; ``finish_answer`` ends it.
        """
        message_id = self.add(conversation_id, "assistant", content, "streaming")
        if message_id is not None:
            self._savers[message_id] = AnswerSaver(
                lambda text: self.update(message_id, content=text)
            )
        return message_id

    def checkpoint(self, message_id: int | None, content: str) -> None:
        """Hand the answer so far to its background writer (never waits for the database)."""
        saver = self._savers.get(message_id) if message_id is not None else None
        if saver is not None:
            saver.offer(content)

    def finish_answer(self, message_id: int | None, **changes: Any) -> None:
        """Stop the answer's background writer, then save its final state."""
        saver = self._savers.pop(message_id, None) if message_id is not None else None
        if saver is not None:
            saver.close()
        self.update(message_id, **changes)

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
