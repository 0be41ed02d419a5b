"""Usage limits per user, shared by all replicas through the store's database.

- messages per minute: a sliding 60 s window of ``rate_events`` rows;
- one generation at a time: a ``generation_leases`` row with an expiry, so a
  process killed mid-answer blocks its user for at most the lease time;
- maximum prompt length: a pure check;
- maximum conversations kept: passed to ``ConversationStore.create_conversation``
  (``max_conversations``), which prunes the oldest.

The per-user read-then-write steps run serialised per user (PostgreSQL advisory
transaction lock; SQLite ``BEGIN IMMEDIATE``), so two replicas cannot both let
the 21st message of a minute through.
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from webapp.settings import Settings
from webapp.store import engine as db
from webapp.store.errors import (
    GenerationInProgress,
    LimitExceeded,
    PromptTooLong,
    RateLimited,
    TooManyConversations,
)
from webapp.store.models import generation_leases as L
from webapp.store.models import rate_events as R
from webapp.store.repository import ConversationStore

__all__ = [
    "GenerationInProgress",
    "GenerationLease",
    "LimitExceeded",
    "PromptTooLong",
    "RateLimited",
    "TooManyConversations",
    "UsageLimits",
    "check_prompt_length",
]

WINDOW = timedelta(seconds=60)
DEFAULT_LEASE_S = 300.0


def check_prompt_length(prompt: str, limit: int) -> None:
    """Raise ``PromptTooLong`` when ``prompt`` has more than ``limit`` characters."""
    if len(prompt) > limit:
        raise PromptTooLong(limit=limit, got=len(prompt))


@dataclass(frozen=True)
class GenerationLease:
    """Proof that ``owner`` holds the generation slot until ``expires_at`` (naive UTC)."""

    owner: str
    token: str
    expires_at: datetime


class UsageLimits:
    """The configured limits, enforced against the store's database.

    Uses the store's clock, so tests control time without sleeping.
    """

    def __init__(
        self,
        store: ConversationStore,
        *,
        messages_per_minute: int,
        max_prompt_chars: int,
        max_conversations: int,
        lease_s: float = DEFAULT_LEASE_S,
    ) -> None:
        self.store = store
        self.messages_per_minute = messages_per_minute
        self.max_prompt_chars = max_prompt_chars
        self.max_conversations = max_conversations
        self.lease_s = lease_s

    @classmethod
    def from_settings(cls, store: ConversationStore, settings: Settings) -> UsageLimits:
        """Limits from the settings (messages per minute, prompt chars, conversations per user)."""
        return cls(
            store,
            messages_per_minute=settings.messages_per_minute,
            max_prompt_chars=settings.max_prompt_chars,
            max_conversations=settings.max_conversations_per_user,
        )

    def check_prompt(self, prompt: str) -> None:
        """``PromptTooLong`` if the prompt is over ``max_prompt_chars``."""
        check_prompt_length(prompt, self.max_prompt_chars)

    def check_system_prompt(self, system_prompt: str) -> None:
        """``PromptTooLong`` (naming the system prompt) over ``max_prompt_chars``: it is sent
        with every turn and stored with the conversation, so it gets the message's limit."""
        if len(system_prompt) > self.max_prompt_chars:
            raise PromptTooLong(
                limit=self.max_prompt_chars, got=len(system_prompt), what="system prompt"
            )

    def record_message(self, owner: str) -> None:
        """Count one message for ``owner``, or raise ``RateLimited`` (nothing counted then).

        Call it before saving/sending the user's message.
        """
        now = self.store.now()
        start = now - WINDOW
        with db.transaction(self.store.migrated_engine()) as conn:
            db.lock_owner(conn, owner)
            conn.execute(delete(R).where(R.c.owner == owner, R.c.at <= start))
            count, oldest = conn.execute(
                select(func.count(), func.min(R.c.at)).where(R.c.owner == owner, R.c.at > start)
            ).one()
            if count >= self.messages_per_minute:
                wait = (oldest + WINDOW - now).total_seconds()
                raise RateLimited(self.messages_per_minute, max(1, math.ceil(wait)))
            conn.execute(insert(R).values(owner=owner, at=now))

    def acquire_generation(self, owner: str, lease_s: float | None = None) -> GenerationLease:
        """Take ``owner``'s single generation slot or raise ``GenerationInProgress``.

        An expired lease (its process died) is taken over.
        """
        now = self.store.now()
        lease = GenerationLease(
            owner=owner,
            token=secrets.token_urlsafe(16),
            expires_at=now + timedelta(seconds=lease_s or self.lease_s),
        )
        try:
            with db.transaction(self.store.migrated_engine()) as conn:
                db.lock_owner(conn, owner)
                conn.execute(delete(L).where(L.c.owner == owner, L.c.expires_at <= now))
                conn.execute(
                    insert(L).values(owner=owner, token=lease.token, expires_at=lease.expires_at)
                )
        except IntegrityError as exc:
            raise GenerationInProgress() from exc
        return lease

    def renew_generation(self, lease: GenerationLease, lease_s: float | None = None) -> bool:
        """Extend a lease (call it while a long answer streams). False if it was lost
        (expired and taken over): the caller should stop."""
        expires_at = self.store.now() + timedelta(seconds=lease_s or self.lease_s)
        with db.transaction(self.store.migrated_engine()) as conn:
            result = conn.execute(
                update(L)
                .where(L.c.owner == lease.owner, L.c.token == lease.token)
                .values(expires_at=expires_at)
            )
        return result.rowcount == 1

    def release_generation(self, lease: GenerationLease) -> None:
        """Give the slot back. Only this lease's token is released, never a newer holder's."""
        with db.transaction(self.store.migrated_engine()) as conn:
            conn.execute(delete(L).where(L.c.owner == lease.owner, L.c.token == lease.token))

    @contextmanager
    def generation(self, owner: str, lease_s: float | None = None) -> Iterator[GenerationLease]:
        """``with limits.generation(owner) as lease:`` — acquire, and always release."""
        lease = self.acquire_generation(owner, lease_s)
        try:
            yield lease
        finally:
            self.release_generation(lease)
