"""``ConversationStore``: users' conversations and messages in SQLite or PostgreSQL.

Writes live here; the read queries and the SQL access rule every statement uses (who may
read, continue, rename or delete a conversation — the one place that policy lives) are in
``queries``.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, delete, insert, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from webapp.access.identity import is_anonymous_key
from webapp.store import engine as db
from webapp.store import queries as q
from webapp.store.errors import (
    ConversationNotFound,
    SettingsTooLarge,
    StoreUnavailable,
    TooManyConversations,
)
from webapp.store.models import conversations as C
from webapp.store.models import messages as M
from webapp.store.records import (
    DEFAULT_TITLE,
    ROLES,
    STATUSES,
    Conversation,
    ConversationSummary,
    new_conversation_id,
    title_from_prompt,
    utcnow,
)

TITLE_STORED_MAX = 200
#: chat settings kept per conversation (system prompt, sampling): MAX_PROMPT_CHARS is at
#: most 200,000, so a system prompt the page accepts always fits
SETTINGS_MAX_CHARS = 256_000
#: a streaming answer not checkpointed for this long lost its writer (the writer touches it
#: every 5 s, HEARTBEAT_EVERY_S): no longer than a dead writer's answer slot stays taken
#: after its last renewal (lease 30 s, renewed every 10 s), so once a user's Retry is let
#: through again, a reload shows the old answer as interrupted, not "still being written"
DEFAULT_STALE_AFTER_S = 20.0

Clock = Callable[[], datetime]


def _checked_settings(chat_settings: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """A copy of ``chat_settings``; ``SettingsTooLarge`` over ``SETTINGS_MAX_CHARS`` as JSON."""
    if chat_settings is None:
        return None
    size = len(json.dumps(dict(chat_settings), default=str))
    if size > SETTINGS_MAX_CHARS:
        raise SettingsTooLarge(SETTINGS_MAX_CHARS, size)
    return dict(chat_settings)


def _check_message(role: str | None, status: str | None) -> None:
    if role is not None and role not in ROLES:
        raise ValueError(f"role must be one of {sorted(ROLES)}, not {role!r}")
    if status is not None and status not in STATUSES:
        raise ValueError(f"status must be one of {sorted(STATUSES)}, not {status!r}")


class ConversationStore:
    """Conversations of many users in one database. Thread-safe; share one per process.

    The engine is created on first use, never at import or construction, and the
    schema is migrated (idempotently) before the first statement. ``clock`` returns
    naive UTC and exists for tests.
    """

    def __init__(
        self, database_url: str, *, clock: Clock = utcnow, pool: db.PoolOptions | None = None
    ) -> None:
        self._database_url = database_url
        self._pool = pool
        self._clock = clock
        self._engine: Engine | None = None
        self._migrated = False
        self._lock = threading.Lock()

    # --- plumbing -------------------------------------------------------------------

    @property
    def engine(self) -> Engine:
        """The SQLAlchemy engine (created lazily; no connection until first use)."""
        with self._lock:
            if self._engine is None:
                try:
                    self._engine = db.create_store_engine(self._database_url, self._pool)
                except (SQLAlchemyError, ValueError, OSError) as exc:
                    raise StoreUnavailable(
                        "Saved conversations are unavailable: the database setting "
                        "(DATABASE_URL) is not usable. Tell the administrator."
                    ) from exc
            return self._engine

    def now(self) -> datetime:
        """The store's clock (naive UTC)."""
        return self._clock()

    def migrate(self) -> None:
        """Create or upgrade the schema. Idempotent; safe when several processes start at once."""
        db.migrate(self.engine)
        self._migrated = True

    def migrated_engine(self) -> Engine:
        """The engine, after making sure the schema is migrated (once per store)."""
        if not self._migrated:
            self.migrate()
        return self.engine

    def dispose(self) -> None:
        """Close pooled connections (tests, shutdown)."""
        if self._engine is not None:
            self._engine.dispose()

    # --- conversations ----------------------------------------------------------------

    def create_conversation(
        self,
        owner: str,
        title: str | None = None,
        chat_settings: Mapping[str, Any] | None = None,
        *,
        max_conversations: int | None = None,
        prune_oldest: bool = True,
        limits_key: str | None = None,
    ) -> Conversation:
        """Start a conversation for ``owner``; ``title`` None means "from the first prompt".

        With ``max_conversations``: if the conversations counted against ``limits_key``
        (default: ``owner``; for guests their network address, which a reload keeps) are
        already that many, the oldest (least recently active) are deleted to make room and
        returned in ``Conversation.pruned`` so the page can say so; with
        ``prune_oldest=False`` ``TooManyConversations`` is raised instead and nothing changes.
        """
        now = self.now()
        new_id = new_conversation_id()
        chat_settings = _checked_settings(chat_settings)
        key = limits_key or owner
        stored_title = title.strip()[:TITLE_STORED_MAX] if title and title.strip() else None
        with db.transaction(self.migrated_engine()) as conn:
            db.lock_owner(conn, key)
            pruned = (
                self._make_room(conn, key, max_conversations, prune_oldest)
                if max_conversations is not None
                else []
            )
            conn.execute(
                insert(C).values(
                    public_id=new_id,
                    owner=owner,
                    limits_key=key,
                    title=stored_title,
                    chat_settings=chat_settings,
                    created_at=now,
                    updated_at=now,
                )
            )
        return Conversation(
            id=new_id,
            title=stored_title or DEFAULT_TITLE,
            created_at=now,
            updated_at=now,
            chat_settings=chat_settings,
            is_owner=True,
            pruned=tuple(pruned),
        )

    @staticmethod
    def _make_room(
        conn: Connection, key: str, max_conversations: int, prune_oldest: bool
    ) -> list[ConversationSummary]:
        """Delete the oldest conversations counted against ``key`` so that one more fits."""
        count = q.count_counted_against(conn, key)
        excess = count - max_conversations + 1
        if excess > 0 and not prune_oldest:
            raise TooManyConversations(max_conversations)
        if excess <= 0:
            return []
        oldest = q.oldest_counted_against(conn, key, excess)
        pks = [row.pk for row in oldest]
        conn.execute(delete(M).where(M.c.conversation_pk.in_(pks)))
        conn.execute(delete(C).where(C.c.pk.in_(pks), C.c.limits_key == key))
        return [q.summary(row) for row in oldest]

    def list_conversations(
        self, owner: str, limit: int = 100, include_ids: Iterable[str] = ()
    ) -> list[ConversationSummary]:
        """``owner``'s conversations, most recently active first.

        ``include_ids`` adds conversations opened by URL in this browser session
        (anonymous viewers only; ids they may not read are silently ignored).
        """
        with db.transaction(self.migrated_engine()) as conn:
            return q.conversation_summaries(conn, owner, limit, include_ids)

    def get_conversation(self, owner: str, conversation_id: str) -> Conversation:
        """The conversation with its messages in order, if ``owner`` may read it."""
        with db.transaction(self.migrated_engine()) as conn:
            return q.read_conversation(conn, owner, conversation_id)

    def rename(self, owner: str, conversation_id: str, title: str) -> str:
        """Rename (owner only) and return the new title; a blank title means "from the first
        prompt" again."""
        with db.transaction(self.migrated_engine()) as conn:
            row = q.find_conversation(conn, owner, conversation_id, manage=True)
            new_title = " ".join(title.split())[:TITLE_STORED_MAX] or None
            if new_title is None:
                first = q.first_user_prompt(conn, row.pk)
                new_title = title_from_prompt(first) if first is not None else None
            conn.execute(update(C).where(C.c.pk == row.pk).values(title=new_title))
        return new_title or DEFAULT_TITLE

    def update_chat_settings(
        self, owner: str, conversation_id: str, chat_settings: Mapping[str, Any]
    ) -> None:
        """Replace the conversation's chat settings (model, temperature, system prompt...)."""
        chat_settings = _checked_settings(chat_settings)
        with db.transaction(self.migrated_engine()) as conn:
            row = q.find_conversation(conn, owner, conversation_id, manage=False)
            conn.execute(
                update(C).where(C.c.pk == row.pk).values(chat_settings=dict(chat_settings))
            )

    def delete(self, owner: str, conversation_id: str) -> None:
        """Delete a conversation and its messages (owner only)."""
        with db.transaction(self.migrated_engine()) as conn:
            row = q.find_conversation(conn, owner, conversation_id, manage=True)
            conn.execute(delete(M).where(M.c.conversation_pk == row.pk))
            conn.execute(delete(C).where(C.c.pk == row.pk, C.c.owner == owner))

    # --- messages ---------------------------------------------------------------------

    def add_message(
        self,
        owner: str,
        conversation_id: str,
        role: str,
        content: str,
        status: str = "complete",
        meta: Mapping[str, Any] | None = None,
    ) -> int:
        """Append a message and return its id. The first user message names an untitled
        conversation. Save the user's message when sent; start an answer as ``streaming``."""
        _check_message(role, status)
        now = self.now()
        try:
            with db.transaction(self.migrated_engine()) as conn:
                row = q.find_conversation(conn, owner, conversation_id, manage=False)
                result = conn.execute(
                    insert(M).values(
                        conversation_pk=row.pk,
                        role=role,
                        content=content,
                        status=status,
                        meta=dict(meta or {}),
                        created_at=now,
                        updated_at=now,
                    )
                )
                values: dict[str, Any] = {"updated_at": now}
                if row.title is None and role == "user":
                    values["title"] = title_from_prompt(content)
                conn.execute(update(C).where(C.c.pk == row.pk).values(**values))
        except IntegrityError as exc:  # deleted by another request in the meantime
            raise ConversationNotFound() from exc
        return int(result.inserted_primary_key[0])

    def update_message(
        self,
        owner: str,
        message_id: int,
        *,
        content: str | None = None,
        status: str | None = None,
        meta: Mapping[str, Any] | None = None,
    ) -> None:
        """Checkpoint or finish a message: new content and/or status; ``meta`` keys are merged.

        Call it often while streaming (status ``streaming``; History writes behind the
        stream every 0.2 s) so that a killed process loses only the tokens since the
        last checkpoint, and once at the end with ``complete``/``stopped``/``failed``/``cut``.
        """
        _check_message(None, status)
        with db.transaction(self.migrated_engine()) as conn:
            row = q.accessible_message(conn, owner, message_id)
            if row is None:
                raise ConversationNotFound()
            values: dict[str, Any] = {"updated_at": self.now()}
            if content is not None:
                values["content"] = content
            if status is not None:
                values["status"] = status
            if meta is not None:
                values["meta"] = {**(row.meta or {}), **meta}
            conn.execute(update(M).where(M.c.id == message_id).values(**values))

    def checkpoint_many(self, items: Sequence[tuple[str, int, str]]) -> list[int]:
        """Save the text so far of several streaming answers in one transaction.

        ``items`` are ``(owner, message_id, content)``; each row is changed only if its
        owner may act on it and it is still ``streaming`` (a finished answer is never
        overwritten by a late checkpoint). One transaction for all the answers of a
        process keeps SQLite's single write lock free for the pages. Returns the ids
        that were not changed.
        """
        missed: list[int] = []
        if not items:
            return missed
        now = self.now()
        with db.transaction(self.migrated_engine()) as conn:
            for owner, message_id, content in items:
                stmt = q.checkpoint_statement(is_anonymous_key(owner))
                params = {"mid": message_id, "owner": owner, "content": content, "now": now}
                result = conn.execute(stmt, params)
                if result.rowcount != 1:
                    missed.append(message_id)
        return missed

    def truncate_after(self, owner: str, conversation_id: str, message_id: int) -> int:
        """Delete every message after ``message_id`` (e.g. the answer to regenerate).

        Returns how many were deleted.
        """
        with db.transaction(self.migrated_engine()) as conn:
            row = q.find_conversation(conn, owner, conversation_id, manage=False)
            result = conn.execute(
                delete(M).where(M.c.conversation_pk == row.pk, M.c.id > message_id)
            )
        return result.rowcount

    def mark_interrupted(self, older_than_s: float = DEFAULT_STALE_AFTER_S) -> int:
        """Mark ``streaming`` messages not checkpointed for ``older_than_s`` as ``interrupted``.

        Their process died mid-answer (any replica). Call on page load; keep the
        threshold well above the checkpoint interval. Returns how many were marked.
        """
        cutoff = self.now() - timedelta(seconds=older_than_s)
        with db.transaction(self.migrated_engine()) as conn:
            result = conn.execute(
                update(M)
                .where(M.c.status == "streaming", M.c.updated_at < cutoff)
                .values(status="interrupted")
            )
        return result.rowcount
