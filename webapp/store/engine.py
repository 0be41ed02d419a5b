"""Database engine and schema migration for the conversation store.

- ``DATABASE_URL`` may be SQLite (default, a file) or PostgreSQL (Cloud SQL in
  production). ``postgresql://``/``postgres://`` URLs get the psycopg 3 driver.
- SQLite runs in WAL mode with a busy timeout, and every transaction starts with
  ``BEGIN IMMEDIATE``: writers queue up instead of failing half-way with
  "database is locked" when a read turns into a write.
- ``migrate`` runs the Alembic scripts of this package (no alembic.ini needed).
  Two processes starting at once are serialised: on PostgreSQL by an advisory
  lock, on SQLite by the immediate transaction the whole upgrade runs in.
"""

from __future__ import annotations

import hashlib
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DBAPIError, IntegrityError, SQLAlchemyError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.pool import StaticPool

from webapp.store.errors import StoreUnavailable

SQLITE_BUSY_TIMEOUT_MS = 30_000
PG_CONNECT_TIMEOUT_S = 5
POOL_BUSY = (
    "Saved conversations are busy right now: every database connection of this app is in "
    "use. Try again in a moment; if it persists, tell the administrator (DATABASE_POOL_SIZE)."
)
UNRESPONSIVE = (
    "Saved conversations are not answering right now, so this is not being saved. The chat "
    "keeps working; saving resumes by itself when the database answers again."
)
BREAKER_COOLDOWN_S = 15.0
_MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


def advisory_key(name: str) -> int:
    """A stable signed 64-bit key for ``pg_advisory_lock`` derived from a name."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


_MIGRATION_LOCK = advisory_key("webapp.store.migrate")
_GENERATION_SLOTS_LOCK = advisory_key("webapp.chat.limits.generation-slots")


def normalise_url(database_url: str) -> URL:
    """Parse ``database_url``; plain PostgreSQL URLs are given the installed psycopg 3 driver."""
    url = make_url(database_url)
    if url.drivername in ("postgresql", "postgres"):
        url = url.set(drivername="postgresql+psycopg")
    return url


@dataclass(frozen=True)
class PoolOptions:
    """Connection pool of a server database (PostgreSQL); SQLite ignores it.

    Each app process holds at most ``size + overflow`` connections; a request that finds
    none free waits ``timeout_s`` and then fails with ``StoreUnavailable`` ("busy"),
    instead of queueing without end. Size it so replicas x (size + overflow) stays below
    the server's ``max_connections``.
    """

    size: int = 5
    overflow: int = 10
    timeout_s: float = 10.0
    connect_timeout_s: int = PG_CONNECT_TIMEOUT_S  # libpq counts whole seconds, at least 2


def create_store_engine(database_url: str, pool: PoolOptions | None = None) -> Engine:
    """Build the engine (no connection is made yet); for SQLite, create the file's directory."""
    pool = pool or PoolOptions()
    url = normalise_url(database_url)
    if url.get_backend_name() == "sqlite":
        database = url.database or ""
        in_memory = database in ("", ":memory:") or database.startswith("file::memory:")
        if in_memory:
            # One shared connection, else each connection would see its own empty database.
            engine = create_engine(
                url, poolclass=StaticPool, connect_args={"check_same_thread": False}
            )
        else:
            Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
            engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})
        _configure_sqlite(engine, wal=not in_memory)
        return engine
    sizing = {
        "pool_size": pool.size,
        "max_overflow": pool.overflow,
        "pool_timeout": pool.timeout_s,
    }
    if url.get_backend_name() == "postgresql":
        return create_engine(
            url,
            pool_pre_ping=True,
            connect_args={"connect_timeout": max(2, int(pool.connect_timeout_s))},
            **sizing,
        )
    return create_engine(url, pool_pre_ping=True, **sizing)


def _enable_wal(cursor, *, budget_s: float = SQLITE_BUSY_TIMEOUT_MS / 1000) -> None:
    """Switch the file to WAL, retrying while another process holds a lock.

    Changing the journal mode needs an exclusive lock, and SQLite answers "database is
    locked" at once (without its busy handler) when another connection is in the middle
    of the same switch or of a write - e.g. two replicas creating a fresh file together.
    Once any connection has switched, the mode is stored in the file and this is a read.
    """
    deadline = time.monotonic() + budget_s
    delay = 0.01
    while True:
        try:
            mode = cursor.execute("PRAGMA journal_mode").fetchone()[0]
            if str(mode).lower() == "wal":
                return
            cursor.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc).lower() or time.monotonic() >= deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 0.25)


def _configure_sqlite(engine: Engine, *, wal: bool) -> None:
    """Pragmas on every new connection; take over transaction begin from the sqlite3 module."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record) -> None:  # pragma: no cover - trivial
        # sqlite3 would otherwise BEGIN lazily (deferred) on its own; we BEGIN ourselves.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        if wal:
            _enable_wal(cursor)
            cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def is_postgres(engine: Engine) -> bool:
    """True when the engine talks to PostgreSQL."""
    return engine.dialect.name == "postgresql"


class Breaker:
    """Fails fast while the database is known not to answer.

    A database that accepts connections but never answers costs every store call the whole
    connect timeout, one after the other: an answer's first token waited ~20 s behind four
    of them. Once a connection (or the migration) fails, every call of the next
    ``cooldown_s`` raises ``StoreUnavailable`` at once without touching the database; the
    first call after that tries again, and a success closes the breaker.
    """

    def __init__(
        self, cooldown_s: float = BREAKER_COOLDOWN_S, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.cooldown_s = cooldown_s
        self._clock = clock
        self._open_until = 0.0
        self._lock = threading.Lock()

    @property
    def open(self) -> bool:
        with self._lock:
            return self._clock() < self._open_until

    def check(self) -> None:
        """Raise ``StoreUnavailable`` while open."""
        if self.open:
            raise StoreUnavailable(UNRESPONSIVE)

    def trip(self) -> None:
        with self._lock:
            self._open_until = self._clock() + self.cooldown_s

    def reset(self) -> None:
        with self._lock:
            self._open_until = 0.0


_breakers: weakref.WeakKeyDictionary[Engine, Breaker] = weakref.WeakKeyDictionary()
_breakers_lock = threading.Lock()


def breaker(engine: Engine) -> Breaker:
    """The breaker of ``engine`` (one per engine, made on first use)."""
    with _breakers_lock:
        found = _breakers.get(engine)
        if found is None:
            found = _breakers[engine] = Breaker()
        return found


@contextmanager
def transaction(engine: Engine) -> Iterator[Connection]:
    """One transaction; database failures become ``StoreUnavailable`` (integrity errors pass).

    A failure to connect or begin opens the engine's ``Breaker``: the calls that follow
    fail at once instead of each waiting for the same unresponsive database."""
    guard = breaker(engine)
    guard.check()
    connected = False
    try:
        with engine.begin() as connection:
            connected = True
            yield connection
    except IntegrityError:
        raise
    except PoolTimeout as exc:
        raise StoreUnavailable(POOL_BUSY) from exc
    except (DBAPIError, SQLAlchemyError) as exc:
        if not connected:
            guard.trip()
        # Deliberately not chained into the message: it may contain the URL or SQL.
        raise StoreUnavailable() from exc
    guard.reset()


def lock_owner(connection: Connection, owner: str) -> None:
    """Serialise concurrent transactions of one user (PostgreSQL; SQLite already is)."""
    if connection.dialect.name == "postgresql":
        connection.execute(
            text("SELECT pg_advisory_xact_lock(:k)"), {"k": advisory_key("owner:" + owner)}
        )


def lock_generation_slots(connection: Connection) -> None:
    """Serialise taking generation slots across replicas (PostgreSQL; SQLite already is).

    Counting the running answers and adding a lease is then one atomic step: two replicas
    cannot both take the last slot. Held to the end of the transaction.
    """
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _GENERATION_SLOTS_LOCK})


def alembic_config(connection: Connection) -> Config:
    """An in-memory Alembic config pointing at this package's migration scripts."""
    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS_DIR))
    config.attributes["connection"] = connection
    return config


def migrate(engine: Engine) -> None:
    """Create or upgrade the schema to the newest revision. Idempotent; safe in parallel."""
    guard = breaker(engine)
    guard.check()
    try:
        with engine.connect() as connection:
            postgres = is_postgres(engine)
            if postgres:
                connection.execute(text("SELECT pg_advisory_lock(:k)"), {"k": _MIGRATION_LOCK})
                connection.commit()
            try:
                with connection.begin():
                    command.upgrade(alembic_config(connection), "head")
            finally:
                if postgres:
                    connection.execute(
                        text("SELECT pg_advisory_unlock(:k)"), {"k": _MIGRATION_LOCK}
                    )
                    connection.commit()
    except (DBAPIError, SQLAlchemyError) as exc:
        guard.trip()
        raise StoreUnavailable() from exc
    guard.reset()
