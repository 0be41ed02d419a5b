"""What the saved answers say about usage: one record per answer of a period.

The chat saves each answer with the stats of its generation in ``messages.meta``
(``webapp.llm.chat.GenerationStats.as_dict``: model, prompt_tokens, completion_tokens,
ttft_s) and, for signed-in users, who asked (``user``: their e-mail or name). This reads
those fields of the answers created in ``[since, until)`` — nothing else of the message,
so neither the text nor a long reasoning is loaded — on SQLite and PostgreSQL alike.

The JSON values are returned as stored, unchecked: they are untrusted data (anything may
have been written there), and ``webapp.admin.usage`` decides what is a usable number.

Who: a user is counted under the key their usage limits count against
(``conversations.limits_key``): the owner key of a signed-in user, the hashed network
address of a guest (whose owner key changes with every reload). Rows from before that
column existed fall back to the owner key.

What is not counted, because it is no longer stored: answers of deleted conversations,
answers replaced by Regenerate (the old answer is deleted), and answers still streaming
(they are counted once finished).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, case, func, null, select
from sqlalchemy.sql.elements import ColumnElement

from webapp.store import engine as db
from webapp.store.models import conversations as C
from webapp.store.models import messages as M
from webapp.store.repository import ConversationStore

#: the meta keys read, in the order of ``AnswerUsage``'s raw fields
META_KEYS = ("model", "prompt_tokens", "completion_tokens", "ttft_s", "user")


@dataclass(frozen=True)
class AnswerUsage:
    """One saved answer: who asked (``user_key``), when, and its raw, unchecked stats."""

    user_key: str
    created_at: datetime
    model: Any = None
    prompt_tokens: Any = None
    completion_tokens: Any = None
    ttft_s: Any = None
    user: Any = None


def _stats(dialect: str) -> ColumnElement[Any]:
    """The ``META_KEYS`` of an answer's meta as one JSON array, JSON types kept (a number
    stays a number, a string a string). One array per row is parsed once, where a column
    per key would parse the meta once per key."""
    if dialect == "postgresql":
        values = [M.c.meta.op("->")(key) for key in META_KEYS]
        return func.json_build_array(*values, type_=JSON)
    # SQLite stores any text: a malformed meta gives NULL rather than failing the whole query
    values = func.json_extract(M.c.meta, *(f'$."{key}"' for key in META_KEYS), type_=JSON)
    return case((func.json_valid(M.c.meta) == 1, values), else_=null())


def answers_between(
    store: ConversationStore, since: datetime, until: datetime
) -> list[AnswerUsage]:
    """The finished answers created in ``[since, until)`` (naive UTC), oldest first.

    ``StoreUnavailable`` when the database cannot be read.
    """
    engine = store.migrated_engine()
    query = (
        select(
            func.coalesce(C.c.limits_key, C.c.owner).label("user_key"),
            M.c.created_at,
            _stats(engine.dialect.name).label("stats"),
        )
        .join(C, C.c.pk == M.c.conversation_pk)
        .where(
            M.c.role == "assistant",
            M.c.status != "streaming",
            M.c.created_at >= since,
            M.c.created_at < until,
        )
        .order_by(M.c.created_at, M.c.id)
    )
    with db.transaction(engine) as conn:
        rows = conn.execute(query).all()
    return [AnswerUsage(row.user_key, row.created_at, *_values(row.stats)) for row in rows]


def _values(stats: Any) -> list[Any]:
    """The array's values; all None when the meta was NULL or not an object."""
    if isinstance(stats, list) and len(stats) == len(META_KEYS):
        return stats
    return [None] * len(META_KEYS)
