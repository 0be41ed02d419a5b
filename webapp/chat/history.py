"""The chat page's persistence: one user's conversations in the store, with limits.

A thin facade over ``ConversationStore`` and ``UsageLimits`` that the chat view
calls. When the database is down the chat keeps working in the browser session:
write methods record the failure in ``problem`` instead of raising, so a user
never loses the conversation on screen because a save failed.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from webapp.access.identity import Owner
from webapp.chat.limits import GenerationLease, UsageLimits, lease_keeper
from webapp.store import (
    Conversation,
    ConversationNotFound,
    ConversationStore,
    ConversationSummary,
    SettingsTooLarge,
    StoreUnavailable,
)

_log = logging.getLogger(__name__)

#: what the page says when a conversation went away under an answer (its owner deleted it
#: in another tab, or it expired): the text on screen stays; it is no longer saved
DELETED = (
    "this conversation was deleted (by its owner, or it expired) while you were in it. "
    "What you see here stays on this page until you leave it; start a new chat to keep going."
)

#: streaming answers are written to the database behind the streams, one round every
#: this often, and each turn hands its text over at the same cadence (not per chunk, see
#: ``webapp.chat.turn``): a killed process loses only the tokens received in the last
#: round's time plus twice this interval; Stop, SIGTERM and failures save all of it
CHECKPOINT_EVERY_S = 0.2
#: an answer whose text does not change (a model still "thinking") is still touched
#: this often, so other sessions do not take it for abandoned (see mark_interrupted)
HEARTBEAT_EVERY_S = 5.0


@dataclass
class _Answer:
    owner: str
    content: str
    on_error: Callable[[str], None]
    written: str | None = None
    written_at: float = 0.0


class CheckpointWriter:
    """Saves the growing text of every streaming answer of this process, behind the streams.

    One thread per store: each round writes, in one transaction, every answer whose text
    changed (or whose heartbeat is due), then waits ``min_interval_s``. The streams never
    wait for the database (``offer`` only hands the text over), and 32 answers streaming at
    once cost one short write transaction per interval instead of 32 competing ones (SQLite
    has a single write lock, which the pages need too). A finished answer is never
    overwritten: the store only changes rows still ``streaming``.
    """

    def __init__(
        self,
        store: ConversationStore,
        *,
        min_interval_s: float = CHECKPOINT_EVERY_S,
        heartbeat_s: float = HEARTBEAT_EVERY_S,
    ) -> None:
        self._store = store
        self._min_interval_s = min_interval_s
        self._heartbeat_s = heartbeat_s
        self._cond = threading.Condition()
        self._answers: dict[int, _Answer] = {}
        self._thread = threading.Thread(target=self._run, name="checkpoints", daemon=True)
        self._thread.start()

    def offer(
        self, owner: str, message_id: int, content: str, on_error: Callable[[str], None]
    ) -> None:
        with self._cond:
            answer = self._answers.get(message_id)
            if answer is None:
                self._answers[message_id] = _Answer(owner, content, on_error)
            else:
                answer.content = content
            self._cond.notify()

    def forget(self, message_id: int) -> None:
        """The answer is finished: no more checkpoints for it."""
        with self._cond:
            self._answers.pop(message_id, None)

    def _due(self, now: float) -> dict[int, _Answer]:
        return {
            mid: a
            for mid, a in self._answers.items()
            if a.content != a.written or now - a.written_at >= self._heartbeat_s
        }

    def _run(self) -> None:
        while True:
            with self._cond:
                while not (due := self._due(time.monotonic())):
                    self._cond.wait(timeout=self._heartbeat_s if self._answers else None)
                batch = [(mid, a, a.content) for mid, a in due.items()]
            try:
                self._store.checkpoint_many([(a.owner, mid, text) for mid, a, text in batch])
            except StoreUnavailable as e:
                for _mid, a, _text in batch:
                    a.on_error(str(e))
            except Exception:  # noqa: BLE001 - keep saving the other answers
                _log.exception("saving streaming answers failed")
                for _mid, a, _text in batch:
                    a.on_error(str(StoreUnavailable()))
            now = time.monotonic()
            with self._cond:
                for _mid, a, text in batch:
                    a.written, a.written_at = text, now
            time.sleep(self._min_interval_s)


_writers: dict[int, CheckpointWriter] = {}
_writers_lock = threading.Lock()


def checkpoint_writer(store: ConversationStore) -> CheckpointWriter:
    """The process's writer for ``store`` (started on first use)."""
    with _writers_lock:
        writer = _writers.get(id(store))
        if writer is None or writer._store is not store:
            writer = _writers[id(store)] = CheckpointWriter(store)
        return writer


@dataclass
class History:
    """The current user's view of the store. Create one per script run (it is cheap)."""

    store: ConversationStore
    limits: UsageLimits
    owner: Owner
    problem: str | None = None
    pruned: int = 0
    _streaming: set[int] = field(default_factory=set)

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
        """A new conversation for the first message; None when the DB is down (or the settings
        are over the store's cap, which ``admit_message`` keeps from happening)."""
        try:
            conv = self.store.create_conversation(
                self.owner.key,
                chat_settings=chat_settings,
                max_conversations=self.limits.max_conversations,
                limits_key=self.owner.limits_key,
            )
        except (StoreUnavailable, SettingsTooLarge) as e:
            self.problem = str(e)
            return None
        self.pruned = len(conv.pruned or ())
        return conv.id

    def save_settings(self, conversation_id: str | None, chat_settings: dict[str, Any]) -> None:
        """Keep the settings the conversation is now answered with (its owner's; the page
        restores them when it is reopened)."""
        if conversation_id is None:
            return
        try:
            self.store.update_chat_settings(self.owner.key, conversation_id, chat_settings)
        except (StoreUnavailable, SettingsTooLarge) as e:
            self.problem = str(e)
        except ConversationNotFound:
            self.problem = DELETED

    def admit_message(self, prompt: str, system_prompt: str = "") -> None:
        """Enforce the prompt-length (message and system prompt) and rate limits (raises
        ``LimitExceeded``; nothing is counted or saved then)."""
        self.limits.check_prompt(prompt)
        self.limits.check_system_prompt(system_prompt)
        try:
            self.limits.record_message(self.owner.limits_key)
        except StoreUnavailable as e:
            self.problem = str(e)  # cannot count: let the message through rather than lose it

    def add(self, conversation_id: str | None, role: str, content: str, status: str = "complete",
            meta: dict[str, Any] | None = None) -> int | None:  # fmt: skip
        """Save a message; returns its id (None when not saved)."""
        if conversation_id is None:
            return None
        if role == "assistant":
            meta = self._who_asked(meta)
        try:
            return self.store.add_message(
                self.owner.key, conversation_id, role, content, status, meta
            )
        except StoreUnavailable as e:
            self.problem = str(e)
        except ConversationNotFound:
            self.problem = DELETED
        return None

    def begin_answer(self, conversation_id: str | None, content: str) -> int | None:
        """Save an answer when its first token arrives (status "streaming").

        Not before: a row written before the request would delay the first token, and
        an answer that never started has nothing to keep. From then on ``checkpoint``
        hands the growing text to the process's ``CheckpointWriter``; ``finish_answer``
        saves the end.
        """
        message_id = self.add(conversation_id, "assistant", content, "streaming")
        if message_id is not None:
            self._streaming.add(message_id)
        return message_id

    def checkpoint(self, message_id: int | None, content: str) -> None:
        """Hand the answer so far to the process's checkpoint writer (never waits)."""
        if message_id in self._streaming:
            checkpoint_writer(self.store).offer(
                self.owner.key, message_id, content, self._record_problem
            )

    def finish_answer(self, message_id: int | None, **changes: Any) -> None:
        """Save the answer's final state; no checkpoint can overwrite it afterwards."""
        if message_id in self._streaming:
            self._streaming.discard(message_id)
            checkpoint_writer(self.store).forget(message_id)
        if "meta" in changes:
            changes["meta"] = self._who_asked(changes["meta"])
        self.update(message_id, **changes)

    def _who_asked(self, meta: dict[str, Any] | None) -> dict[str, Any] | None:
        """An answer's stats with who asked (a signed-in user's e-mail, else their name),
        for the admins' usage table (webapp.admin.usage). Nothing is added for guests."""
        if meta is None or self.owner.anonymous:
            return meta
        return {**meta, "user": self.owner.email or self.owner.label}

    def _record_problem(self, problem: str) -> None:
        self.problem = problem

    def update(self, message_id: int | None, **changes: Any) -> None:
        """Change a saved message (content, status, meta)."""
        if message_id is None:
            return
        try:
            self.store.update_message(self.owner.key, message_id, **changes)
        except StoreUnavailable as e:
            self.problem = str(e)
        except ConversationNotFound:
            self.problem = DELETED

    def truncate_after(self, conversation_id: str | None, message_id: int | None) -> None:
        """Delete what follows ``message_id`` (regenerate replaces the last answer)."""
        if conversation_id is None or message_id is None:
            return
        try:
            self.store.truncate_after(self.owner.key, conversation_id, message_id)
        except StoreUnavailable as e:
            self.problem = str(e)
        except ConversationNotFound:
            self.problem = DELETED

    def rename(self, conversation_id: str, title: str) -> str:
        return self.store.rename(self.owner.key, conversation_id, title)

    def delete(self, conversation_id: str) -> None:
        self.store.delete(self.owner.key, conversation_id)

    # ---- one answer at a time per user, a few at a time in the app -----------------
    def acquire(self) -> GenerationLease | None:
        """The user's single generation slot (``GenerationInProgress`` if taken; ``ModelBusy``
        when the whole app runs its maximum of answers). None when the DB is down. The
        process's ``LeaseKeeper`` renews it until ``release``."""
        try:
            lease = self.limits.acquire_generation(self.owner.limits_key)
        except StoreUnavailable as e:
            self.problem = str(e)
            return None
        lease_keeper(self.limits).hold(lease)
        return lease

    def release(self, lease: GenerationLease | None) -> None:
        if lease is None:
            return
        lease_keeper(self.limits).drop(lease)
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
