"""Anonymous conversations expire: deleted once idle for the configured time.

An anonymous conversation belongs to a browser session and whoever holds its link; nobody
can list or delete it later, so without an end it would be kept forever
(``ANONYMOUS_CONVERSATION_TTL_DAYS``, default 30; logged-in users' conversations stay).

``expire_anonymous`` deletes in batches of short transactions. It is safe to run from
several replicas at once: on PostgreSQL a transaction-scoped advisory try-lock lets one
replica do a round while the others skip it (no two replicas deleting the same rows and
waiting on each other); on SQLite every write transaction is ``BEGIN IMMEDIATE`` already.
``ExpiryJob`` runs it in a background thread of each app process, once an hour.
"""

from __future__ import annotations

import logging
import random
import threading
from datetime import timedelta

from sqlalchemy import delete, select, text

from webapp.access.identity import ANON_PREFIX
from webapp.store import engine as db
from webapp.store.errors import StoreUnavailable
from webapp.store.models import conversations as C
from webapp.store.models import messages as M
from webapp.store.repository import ConversationStore

_log = logging.getLogger(__name__)
_LOCK = db.advisory_key("webapp.store.expiry")
BATCH = 500
EVERY_S = 3600.0


def expire_anonymous(store: ConversationStore, ttl: timedelta, *, batch: int = BATCH) -> int:
    """Delete anonymous conversations (and their messages) idle longer than ``ttl``.

    Returns how many this call deleted; 0 also when another replica holds the round."""
    cutoff = store.now() - ttl
    deleted = 0
    while True:
        with db.transaction(store.migrated_engine()) as conn:
            if conn.dialect.name == "postgresql":
                mine = conn.execute(text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": _LOCK})
                if not mine.scalar():
                    return deleted  # another replica is expiring right now
            pks = (
                conn.execute(
                    select(C.c.pk)
                    .where(C.c.owner.startswith(ANON_PREFIX, autoescape=True))
                    .where(C.c.updated_at < cutoff)
                    .order_by(C.c.pk)
                    .limit(batch)
                )
                .scalars()
                .all()
            )
            if pks:
                conn.execute(delete(M).where(M.c.conversation_pk.in_(pks)))
                conn.execute(delete(C).where(C.c.pk.in_(pks)))
        deleted += len(pks)
        if len(pks) < batch:
            return deleted


class ExpiryJob:
    """Runs ``expire_anonymous`` every ``every_s`` (first run after a random part of a
    minute, so replicas started together do not all run at once) in a daemon thread."""

    def __init__(self, store: ConversationStore, ttl: timedelta, every_s: float = EVERY_S):
        self.store, self.ttl, self.every_s = store, ttl, every_s
        self.runs = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="expire-anonymous")

    def start(self) -> ExpiryJob:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def run_once(self) -> int:
        """One round; a database that is down is only logged (the next round tries again)."""
        try:
            n = expire_anonymous(self.store, self.ttl)
        except StoreUnavailable as exc:
            _log.warning("anonymous conversations not expired this round: %s", exc)
            return 0
        finally:
            self.runs += 1
        if n:
            _log.info("expired %d anonymous conversation(s)", n)
        return n

    def _run(self) -> None:
        wait = random.uniform(0, min(60.0, self.every_s))  # noqa: S311 - jitter, not crypto
        while not self._stop.wait(wait):
            self.run_once()
            wait = self.every_s


_jobs: dict[int, ExpiryJob] = {}
_jobs_lock = threading.Lock()


def start_expiry(store: ConversationStore, ttl_days: int) -> ExpiryJob | None:
    """The process's expiry job for ``store`` (started once); None when ``ttl_days`` is 0."""
    if ttl_days <= 0:
        return None
    with _jobs_lock:
        job = _jobs.get(id(store))
        if job is None or job.store is not store:
            job = _jobs[id(store)] = ExpiryJob(store, timedelta(days=ttl_days)).start()
        return job
