"""Connection pool sizing of a server database, and the "busy" message when it runs dry."""

from __future__ import annotations

import pytest

from webapp.store import ConversationStore, PoolOptions, StoreUnavailable
from webapp.store.engine import POOL_BUSY, create_store_engine


@pytest.mark.parametrize(
    ("pool", "size", "overflow", "timeout"),
    [
        (None, 5, 10, 10.0),
        (PoolOptions(20, 40, 3.0), 20, 40, 3.0),
        (PoolOptions(1, 0, 0.5), 1, 0, 0.5),
    ],
)
def test_postgres_engine_takes_the_pool_sizing(pool, size, overflow, timeout):
    engine = create_store_engine("postgresql://u@db.invalid:5432/chat", pool)  # no I/O
    assert (engine.pool.size(), engine.pool._max_overflow, engine.pool._timeout) == (
        size,
        overflow,
        timeout,
    )


@pytest.mark.parametrize(
    "url",
    ["sqlite:///:memory:", "sqlite:///{tmp}/chat.db"],
)
def test_sqlite_ignores_the_pool_sizing(url, tmp_path):
    # SQLite: one shared connection in memory, per-thread connections for a file
    engine = create_store_engine(url.format(tmp=tmp_path), PoolOptions(1, 0, 0.1))
    with engine.connect(), engine.connect():  # two at once: no pool limit of 1 applies
        pass
    engine.dispose()


@pytest.mark.postgres
def test_a_dry_pool_says_busy_then_recovers(postgres_url):
    store = ConversationStore(postgres_url, pool=PoolOptions(size=1, overflow=0, timeout_s=0.3))
    store.migrate()
    try:
        held = store.engine.connect()  # the only connection, taken by another request
        with pytest.raises(StoreUnavailable) as err:
            store.list_conversations("alice")
        assert str(err.value) == POOL_BUSY
        assert "postgresql" not in str(err.value) and "SELECT" not in str(err.value)
        held.close()
        assert store.list_conversations("alice") == []  # the connection is back: works
    finally:
        store.dispose()
