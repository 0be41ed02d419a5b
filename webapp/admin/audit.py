"""Persistent audit log of admin actions: who did what, when, to what, with what result.

One table, ``audit_log``, in the app's database (``DATABASE_URL``: SQLite by
default, PostgreSQL in production). It is created on first use with
``MetaData.create_all(checkfirst=True)``; two processes starting at once are
serialised (PostgreSQL advisory lock; SQLite ``BEGIN IMMEDIATE``), and a lost
race ("already exists") is accepted when the table is there afterwards.

Secrets never reach the table: ``redact`` replaces values under keys such as
``token``, ``secret``, ``password``, ``api_key``, ``authorization`` and values
that look like bearer tokens, JWTs or Hugging Face / OpenAI keys.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pydantic import SecretBytes, SecretStr
from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    DateTime,
    Engine,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    inspect,
    select,
    text,
)
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

REDACTED = "***"
TABLE_NAME = "audit_log"
MAX_DETAILS_CHARS = 16_000

# Words that make a key secret ("hf_token", "apiKey", "x-goog-iap-jwt-assertion"...).
_SECRET_WORDS = frozenset(
    {
        "token",
        "secret",
        "password",
        "passwd",
        "pwd",
        "key",
        "apikey",
        "authorization",
        "auth",
        "credential",
        "credentials",
        "cookie",
        "jwt",
        "assertion",
        "bearer",
        "private",
    }
)
_SECRET_VALUE = re.compile(
    r"^\s*(bearer\s+\S+|hf_[A-Za-z0-9]{16,}|sk-[A-Za-z0-9_-]{16,}|ya29\.\S+"
    r"|eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*)",
    re.IGNORECASE,
)


class AuditError(Exception):
    """Base of audit-log errors."""


class AuditUnavailable(AuditError):
    """The audit database cannot be reached or written."""

    def __init__(self, message: str = "") -> None:
        super().__init__(
            message or "The audit log is unavailable: the database cannot be reached right now."
        )


@dataclass(frozen=True)
class AuditEntry:
    """One recorded action."""

    id: int
    at: datetime  # UTC
    actor: str
    action: str
    target: str
    result: str
    details: dict[str, Any] = field(default_factory=dict)


def _key_words(key: str) -> list[str]:
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", key)
    return [w for w in re.split(r"[^A-Za-z0-9]+", spaced.lower()) if w]


def is_secret_key(key: str) -> bool:
    """True for keys that name a secret: a word of the key is token/secret/password/key/..."""
    words = _key_words(str(key))
    return any(w in _SECRET_WORDS for w in words) or "".join(words) in _SECRET_WORDS


def redact(value: Any) -> Any:
    """A JSON-safe copy of ``value`` with secrets replaced by ``***`` (recursively)."""
    if isinstance(value, SecretStr | SecretBytes):
        return REDACTED
    if isinstance(value, Mapping):
        return {
            str(k): (REDACTED if is_secret_key(str(k)) else redact(v)) for k, v in value.items()
        }
    if isinstance(value, list | tuple | set | frozenset):
        return [redact(v) for v in value]
    if isinstance(value, str):
        return REDACTED if _SECRET_VALUE.match(value) else value
    if value is None or isinstance(value, bool | int | float):
        return value
    return redact(str(value))


def _table(metadata: MetaData) -> Table:
    return Table(
        TABLE_NAME,
        metadata,
        Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
        Column("at", DateTime(), nullable=False),  # naive UTC, like the conversation store
        Column("actor", String(320), nullable=False),
        Column("action", String(100), nullable=False),
        Column("target", String(500), nullable=False, default=""),
        Column("result", String(50), nullable=False),
        Column("details", JSON(), nullable=False),
        Index(f"ix_{TABLE_NAME}_at", "at"),
    )


class AuditLog:
    """The audit log on one database engine (table created on first use)."""

    def __init__(self, engine: Engine, *, schema: str | None = None) -> None:
        self._engine = engine
        self._schema = schema
        self._metadata = MetaData(schema=schema)
        self.table = _table(self._metadata)
        self._ready = False
        self._lock = threading.Lock()

    @classmethod
    def from_url(cls, database_url: str, *, schema: str | None = None) -> AuditLog:
        """An audit log on ``database_url`` (same engine setup as the conversation store)."""
        from webapp.store.engine import create_store_engine

        return cls(create_store_engine(database_url), schema=schema)

    def ensure_schema(self) -> None:
        """Create ``audit_log`` if missing. Idempotent and safe to run from several processes."""
        with self._lock:
            if self._ready:
                return
            try:
                with self._engine.begin() as conn:
                    if conn.dialect.name == "postgresql":
                        conn.execute(
                            text("SELECT pg_advisory_xact_lock(hashtext(:k))"),
                            {"k": f"audit_log.create:{self._schema or ''}"},
                        )
                    self._metadata.create_all(conn, checkfirst=True)
            except (DBAPIError, SQLAlchemyError) as exc:
                # A concurrent creator may have won the race; fine if the table exists now.
                if not self._table_exists():
                    raise AuditUnavailable() from exc
            self._ready = True

    def _table_exists(self) -> bool:
        try:
            return inspect(self._engine).has_table(TABLE_NAME, schema=self._schema)
        except (DBAPIError, SQLAlchemyError):
            return False

    def record(
        self,
        actor: str,
        action: str,
        target: str = "",
        result: str = "ok",
        details: Mapping[str, Any] | None = None,
        *,
        at: datetime | None = None,
    ) -> AuditEntry:
        """Append one entry (details are redacted and size-limited) and return it."""
        if not actor or not action:
            raise ValueError("actor and action are required")
        safe = redact(dict(details or {}))
        encoded = json.dumps(safe, default=str)
        if len(encoded) > MAX_DETAILS_CHARS:
            safe = {"truncated": True, "preview": encoded[:MAX_DETAILS_CHARS]}
        when = (at or datetime.now(UTC)).astimezone(UTC).replace(tzinfo=None)
        row = {
            "at": when,
            "actor": actor[:320],
            "action": action[:100],
            "target": (target or "")[:500],
            "result": result[:50],
            "details": safe,
        }
        self.ensure_schema()
        try:
            with self._engine.begin() as conn:
                new_id = conn.execute(self.table.insert().values(**row)).inserted_primary_key[0]
        except (DBAPIError, SQLAlchemyError) as exc:
            raise AuditUnavailable() from exc
        return AuditEntry(id=int(new_id), **{**row, "at": when.replace(tzinfo=UTC)})

    def recent(self, limit: int = 50, *, actor: str | None = None) -> list[AuditEntry]:
        """The newest ``limit`` entries, newest first (optionally of one actor)."""
        if limit < 1:
            return []
        self.ensure_schema()
        t = self.table
        query = select(t).order_by(t.c.at.desc(), t.c.id.desc()).limit(min(limit, 10_000))
        if actor:
            query = query.where(t.c.actor == actor)
        try:
            with self._engine.connect() as conn:
                rows = conn.execute(query).mappings().all()
        except (DBAPIError, SQLAlchemyError) as exc:
            raise AuditUnavailable() from exc
        return [
            AuditEntry(
                id=int(r["id"]),
                at=r["at"].replace(tzinfo=UTC),
                actor=r["actor"],
                action=r["action"],
                target=r["target"],
                result=r["result"],
                details=dict(r["details"] or {}),
            )
            for r in rows
        ]
