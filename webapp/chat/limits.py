"""Usage limits, shared by all replicas through the store's database.

Every limit is counted against a *limits key*: the user for logged-in users, the client's
network address for guests (``webapp.access.identity.Owner.limits_key``), so that neither a reload
nor another replica resets it.

- messages per minute: a sliding 60 s window of ``rate_events`` rows per key;
- one generation at a time per key: a ``generation_leases`` row with a short expiry that
  the process's ``LeaseKeeper`` renews while the answer runs, so a process killed
  mid-answer blocks its key for at most the lease time (30 s);
- at most ``max_concurrent_generations`` answers at once in the whole app: the unexpired
  leases are the answers running on every replica, counted when a lease is taken;
- maximum prompt length: a pure check;
- maximum conversations kept: passed to ``ConversationStore.create_conversation``
  (``max_conversations``, counted per limits key), which prunes the oldest.

The read-then-write steps are serialised (PostgreSQL advisory transaction locks: per key for
the rate, one for all generation slots; SQLite ``BEGIN IMMEDIATE``), so two replicas can
neither both let the 21st message of a minute through nor both take the last slot.
"""

from __future__ import annotations

import logging
import math
import secrets
import threading
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
    ModelBusy,
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
    "ModelBusy",
    "PromptTooLong",
    "RateLimited",
    "TooManyConversations",
    "UsageLimits",
    "check_prompt_length",
]

_log = logging.getLogger(__name__)

WINDOW = timedelta(seconds=60)
#: a lease not renewed for this long is over: what a process killed mid-answer blocks its
#: user (or guest address) for, and how long it still counts against the app-wide cap
DEFAULT_LEASE_S = 30.0
#: the leases of the answers still running are renewed this often (LeaseKeeper)
RENEW_EVERY_S = 10.0
DEFAULT_MAX_CONCURRENT_GENERATIONS = 32


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
        max_concurrent_generations: int = DEFAULT_MAX_CONCURRENT_GENERATIONS,
        lease_s: float = DEFAULT_LEASE_S,
    ) -> None:
        self.store = store
        self.messages_per_minute = messages_per_minute
        self.max_prompt_chars = max_prompt_chars
        self.max_conversations = max_conversations
        self.max_concurrent_generations = max_concurrent_generations
        self.lease_s = lease_s

    @classmethod
    def from_settings(cls, store: ConversationStore, settings: Settings) -> UsageLimits:
        """Limits from the settings (messages per minute, prompt chars, conversations per
        user, answers at once in the whole app)."""
        return cls(
            store,
            messages_per_minute=settings.messages_per_minute,
            max_prompt_chars=settings.max_prompt_chars,
            max_conversations=settings.max_conversations_per_user,
            max_concurrent_generations=settings.max_concurrent_generations,
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
        """Take ``owner``'s single generation slot, which is also one of the app's
        ``max_concurrent_generations``; else raise ``GenerationInProgress`` (``owner`` has
        one running) or ``ModelBusy`` (all are taken). Nothing changes when it raises.

        Expired leases (their process died) are dropped first and count for nobody.
        """
        now = self.store.now()
        lease = GenerationLease(
            owner=owner,
            token=secrets.token_urlsafe(16),
            expires_at=now + timedelta(seconds=lease_s or self.lease_s),
        )
        try:
            with db.transaction(self.store.migrated_engine()) as conn:
                db.lock_generation_slots(conn)
                conn.execute(delete(L).where(L.c.expires_at <= now))
                if conn.execute(select(L.c.owner).where(L.c.owner == owner)).first():
                    raise GenerationInProgress()
                running = conn.execute(select(func.count()).select_from(L)).scalar_one()
                if running >= self.max_concurrent_generations:
                    raise ModelBusy(running)
                conn.execute(
                    insert(L).values(owner=owner, token=lease.token, expires_at=lease.expires_at)
                )
        except IntegrityError as exc:
            raise GenerationInProgress() from exc
        return lease

    def running_generations(self) -> int:
        """Answers being generated right now in the whole app (unexpired leases)."""
        with db.transaction(self.store.migrated_engine()) as conn:
            return conn.execute(
                select(func.count()).select_from(L).where(L.c.expires_at > self.store.now())
            ).scalar_one()

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


class LeaseKeeper:
    """Renews the leases of this process's running answers, behind the streams.

    One thread per store: every ``every_s`` it extends each held lease by the limits'
    ``lease_s``, so an answer of any length keeps its slot (and keeps counting against the
    app-wide cap) while a killed process's leases run out soon. The streams never wait
    for it; a failed renewal is logged (the lease may then expire and count no more).
    """

    def __init__(self, limits: UsageLimits, *, every_s: float = RENEW_EVERY_S) -> None:
        self.limits = limits
        self._every_s = every_s
        self._cond = threading.Condition()
        self._held: dict[str, GenerationLease] = {}
        self._thread = threading.Thread(target=self._run, name="leases", daemon=True)
        self._thread.start()

    def hold(self, lease: GenerationLease) -> None:
        """Keep ``lease`` alive until ``drop``."""
        with self._cond:
            self._held[lease.token] = lease
            self._cond.notify()

    def drop(self, lease: GenerationLease) -> None:
        with self._cond:
            self._held.pop(lease.token, None)

    def renew_now(self) -> None:
        """One round: extend every held lease (the thread does this every ``every_s``)."""
        with self._cond:
            held = list(self._held.values())
        for lease in held:
            try:
                if not self.limits.renew_generation(lease):
                    _log.warning("a generation lease expired before it was renewed")
            except Exception:  # noqa: BLE001 - keep renewing the other leases
                _log.exception("renewing a generation lease failed")

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._held:
                    self._cond.wait()
                self._cond.wait(timeout=self._every_s)
            self.renew_now()


_keepers: dict[int, LeaseKeeper] = {}
_keepers_lock = threading.Lock()


def lease_keeper(limits: UsageLimits) -> LeaseKeeper:
    """The process's keeper for the leases of ``limits.store`` (started on first use)."""
    with _keepers_lock:
        keeper = _keepers.get(id(limits.store))
        if keeper is None or keeper.limits.store is not limits.store:
            keeper = _keepers[id(limits.store)] = LeaseKeeper(limits)
        return keeper
