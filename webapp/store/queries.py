"""Read queries of the conversation store, and the SQL access rule every statement uses.

Ownership is enforced in the SQL of every statement (``WHERE owner = :owner``),
never by filtering in Python afterwards. A conversation that does not exist and
one that belongs to someone else raise the same ``ConversationNotFound``.

Access policy (the one place it lives, :func:`access`):

- the owner may do everything: read, continue (add/update/truncate messages),
  rename, change settings, delete;
- an *anonymous* viewer who knows the id of an *anonymous* conversation (it was
  in their URL) may read and continue it — the unguessable id is a capability,
  so a guest who reloads the page, and so gets a new browser key, keeps chatting;
  they may not rename or delete it, and it appears in their list only when the
  page passes its id in ``include_ids``;
- a logged-in user's conversation is reachable by that user only, URL or not.

Every function takes an open ``Connection`` (the caller's transaction) and returns rows
or records; none commits.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from typing import Any

from sqlalchemy import Connection, Update, and_, bindparam, func, or_, select, update
from sqlalchemy.sql.elements import ColumnElement

from webapp.access.identity import ANON_PREFIX, is_anonymous_key
from webapp.store.errors import ConversationNotFound
from webapp.store.models import conversations as C
from webapp.store.models import messages as M
from webapp.store.records import (
    DEFAULT_TITLE,
    Conversation,
    ConversationSummary,
    Message,
    is_valid_conversation_id,
)


def access(owner: str, *, manage: bool) -> ColumnElement[bool]:
    """SQL condition: may ``owner`` act on the conversation row (see module docstring)."""
    return _access(owner, anonymous=is_anonymous_key(owner), manage=manage)


def _access(owner: Any, *, anonymous: bool, manage: bool) -> ColumnElement[bool]:
    """:func:`access` for an owner key or a bound parameter standing for one."""
    if manage or not anonymous:
        return C.c.owner == owner
    return or_(C.c.owner == owner, C.c.owner.startswith(ANON_PREFIX, autoescape=True))


@functools.cache
def checkpoint_statement(anonymous: bool) -> Update:
    """``UPDATE`` of a streaming answer's text, built once per process with bound
    parameters ``mid``, ``owner``, ``content``, ``now``: the checkpoint writer runs it for
    every streaming answer several times a second, and building it per row (the
    expression and its cache key) cost 4x its execution on SQLite. The access rule is
    :func:`access`'s (continue, not manage), for an anonymous owner key or not."""
    may = _access(bindparam("owner"), anonymous=anonymous, manage=False)
    return (
        update(M)
        .where(
            M.c.id == bindparam("mid"),
            M.c.status == "streaming",
            M.c.conversation_pk.in_(select(C.c.pk).where(may)),
        )
        .values(content=bindparam("content"), updated_at=bindparam("now"))
    )


def summary(row: Any) -> ConversationSummary:
    """The list entry of a conversation row."""
    return ConversationSummary(
        id=row.public_id,
        title=row.title or DEFAULT_TITLE,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def message(row: Any) -> Message:
    """The record of a message row."""
    return Message(
        id=row.id,
        role=row.role,
        content=row.content,
        status=row.status,
        meta=dict(row.meta or {}),
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def find_conversation(conn: Connection, owner: str, conversation_id: str, *, manage: bool) -> Any:
    """The conversation row ``owner`` may act on, else ``ConversationNotFound``."""
    if not is_valid_conversation_id(conversation_id):
        raise ConversationNotFound()
    row = conn.execute(
        select(C).where(C.c.public_id == conversation_id, access(owner, manage=manage))
    ).first()
    if row is None:
        raise ConversationNotFound()
    return row


def conversation_summaries(
    conn: Connection, owner: str, limit: int, include_ids: Iterable[str]
) -> list[ConversationSummary]:
    """``owner``'s conversations, most recently active first, plus ``include_ids`` that an
    anonymous viewer may read (others silently ignored)."""
    extra = [i for i in include_ids if is_valid_conversation_id(i)]
    mine = C.c.owner == owner
    if extra and is_anonymous_key(owner):
        mine = or_(mine, and_(C.c.public_id.in_(extra), access(owner, manage=False)))
    rows = conn.execute(
        select(C).where(mine).order_by(C.c.updated_at.desc(), C.c.pk.desc()).limit(limit)
    ).all()
    return [summary(row) for row in rows]


def read_conversation(conn: Connection, owner: str, conversation_id: str) -> Conversation:
    """The conversation with its messages in order, if ``owner`` may read it."""
    row = find_conversation(conn, owner, conversation_id, manage=False)
    rows = conn.execute(select(M).where(M.c.conversation_pk == row.pk).order_by(M.c.id)).all()
    return Conversation(
        id=row.public_id,
        title=row.title or DEFAULT_TITLE,
        created_at=row.created_at,
        updated_at=row.updated_at,
        chat_settings=dict(row.chat_settings) if row.chat_settings is not None else None,
        is_owner=row.owner == owner,
        messages=tuple(message(r) for r in rows),
    )


def first_user_prompt(conn: Connection, conversation_pk: int) -> str | None:
    """The text of the conversation's first user message, or None."""
    return conn.execute(
        select(M.c.content)
        .where(M.c.conversation_pk == conversation_pk, M.c.role == "user")
        .order_by(M.c.id)
        .limit(1)
    ).scalar()


def accessible_message(conn: Connection, owner: str, message_id: int) -> Any:
    """``(id, meta)`` of a message in a conversation ``owner`` may continue, or None."""
    return conn.execute(
        select(M.c.id, M.c.meta)
        .join(C, C.c.pk == M.c.conversation_pk)
        .where(M.c.id == message_id, access(owner, manage=False))
    ).first()


def count_counted_against(conn: Connection, key: str) -> int:
    """How many conversations count against the limits key ``key``."""
    return conn.execute(
        select(func.count()).select_from(C).where(C.c.limits_key == key)
    ).scalar_one()


def oldest_counted_against(conn: Connection, key: str, n: int) -> list[Any]:
    """The ``n`` least recently active conversation rows counted against ``key``."""
    return list(
        conn.execute(
            select(C)
            .where(C.c.limits_key == key)
            .order_by(C.c.updated_at.asc(), C.c.pk.asc())
            .limit(n)
        ).all()
    )
