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

from sqlalchemy import func, select

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


def answers_between(
    store: ConversationStore, since: datetime, until: datetime
) -> list[AnswerUsage]:
    """The finished answers created in ``[since, until)`` (naive UTC), oldest first.

    ``StoreUnavailable`` when the database cannot be read.
    """
    fields = [M.c.meta[key].label(key) for key in META_KEYS]
    query = (
        select(func.coalesce(C.c.limits_key, C.c.owner).label("user_key"), M.c.created_at, *fields)
        .join(C, C.c.pk == M.c.conversation_pk)
        .where(
            M.c.role == "assistant",
            M.c.status != "streaming",
            M.c.created_at >= since,
            M.c.created_at < until,
        )
        .order_by(M.c.created_at, M.c.id)
    )
    with db.transaction(store.migrated_engine()) as conn:
        rows = conn.execute(query).all()
    return [AnswerUsage(**row._mapping) for row in rows]
