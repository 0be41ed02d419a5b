"""Backend fixtures (SQLite and PostgreSQL) for every test in tests/store."""

from tests.store.backends import clock, database_url, postgres_url, store  # noqa: F401
