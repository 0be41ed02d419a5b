"""Database backends for the store tests: the same tests run on SQLite and PostgreSQL.

PostgreSQL: ``DATABASE_URL_TEST`` or ``postgresql+psycopg://postgres@127.0.0.1:5432/test``.
Each test gets its own schema (other test suites share the database) that is
dropped afterwards; the test is skipped with the reason when no server answers.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from datetime import datetime, timedelta

import psycopg
import pytest
from sqlalchemy.engine import make_url

PG_URL = os.environ.get("DATABASE_URL_TEST", "postgresql+psycopg://postgres@127.0.0.1:5432/test")

_pg_problem: list[str] = []  # cached reason, computed once per session


def _libpq_conninfo(url: str) -> str:
    u = make_url(url)
    return u.set(drivername="postgresql").render_as_string(hide_password=False)


def postgres_unavailable() -> str | None:
    """Why PostgreSQL cannot be used here, or None when it answers."""
    if not _pg_problem:
        try:
            with psycopg.connect(_libpq_conninfo(PG_URL), connect_timeout=3):
                _pg_problem.append("")
        except psycopg.Error as exc:
            _pg_problem.append(f"PostgreSQL not reachable at {make_url(PG_URL)!s}: {exc}")
    return _pg_problem[0] or None


class FakeClock:
    """A clock the test moves by hand (naive UTC, like the store)."""

    def __init__(self) -> None:
        self.now = datetime(2025, 3, 1, 12, 0, 0)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def _fresh_pg_schema() -> Iterator[str]:
    schema = "store_test_" + secrets.token_hex(6)
    conninfo = _libpq_conninfo(PG_URL)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield (
            make_url(PG_URL)
            .update_query_dict({"options": f"-csearch_path={schema}"})
            .render_as_string(hide_password=False)
        )
    finally:
        with psycopg.connect(conninfo, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


@pytest.fixture(
    params=[
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
    ]
)
def database_url(request, tmp_path) -> Iterator[str]:
    """A fresh, empty database URL: a SQLite file, or a new PostgreSQL schema."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'db' / 'chat.db'}"
        return
    yield from _postgres_schema_url()


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL schema URL, for tests of PostgreSQL-only behaviour."""
    yield from _postgres_schema_url()


def _postgres_schema_url() -> Iterator[str]:
    reason = postgres_unavailable()
    if reason:
        pytest.skip(reason)
    yield from _fresh_pg_schema()


@pytest.fixture
def clock() -> FakeClock:
    """A hand-driven clock."""
    return FakeClock()


@pytest.fixture
def store(database_url, clock):
    """A migrated store on a fresh database, disposed at the end."""
    from webapp.store import ConversationStore

    s = ConversationStore(database_url, clock=clock)
    s.migrate()
    yield s
    s.dispose()
