"""Schema creation: automatic, idempotent, safe when several processes start at once,
and a plain StoreUnavailable (without the URL) when the database cannot be used."""

from __future__ import annotations

import multiprocessing
import traceback
from datetime import datetime

import pytest
from alembic import command
from sqlalchemy import inspect, text

from webapp.store import ConversationStore, StoreUnavailable
from webapp.store import engine as db
from webapp.store.models import VERSION_TABLE

TABLES = {
    "conversations",
    "messages",
    "rate_events",
    "generation_leases",
    "model_loads",
    VERSION_TABLE,
}
HEAD = "0003"
PROCESSES = 4


def _migrate_in_child(url, barrier, results):
    try:
        store = ConversationStore(url)
        store.engine  # noqa: B018 - build the engine before the race starts
        barrier.wait(timeout=60)
        store.migrate()
        store.dispose()
        results.put("ok")
    except BaseException:
        results.put(traceback.format_exc())


def test_processes_migrating_a_fresh_database_at_once_all_succeed(database_url):
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(PROCESSES)
    results = ctx.Queue()
    procs = [
        ctx.Process(target=_migrate_in_child, args=(database_url, barrier, results))
        for _ in range(PROCESSES)
    ]
    for p in procs:
        p.start()
    try:
        outcomes = [results.get(timeout=120) for _ in procs]
    finally:
        for p in procs:
            p.join(timeout=30)
            if p.is_alive():
                p.kill()
                p.join()
    assert outcomes == ["ok"] * PROCESSES
    store = ConversationStore(database_url)
    try:
        assert set(inspect(store.engine).get_table_names()) >= TABLES
        with store.engine.connect() as conn:
            versions = conn.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).all()
        assert [v[0] for v in versions] == [HEAD]
    finally:
        store.dispose()


def test_migrate_is_idempotent_and_first_use_migrates_by_itself(database_url):
    store = ConversationStore(database_url)
    try:
        conv = store.create_conversation("anon:" + "x" * 24)  # no explicit migrate()
        store.migrate()
        store.migrate()
        assert store.get_conversation("anon:" + "x" * 24, conv.id).id == conv.id
    finally:
        store.dispose()


def test_upgrade_from_0001_counts_existing_conversations_against_their_owner(database_url):
    """0002 adds conversations.limits_key: rows from before keep the cap they had (owner)."""
    store = ConversationStore(database_url)
    try:
        with store.engine.begin() as conn:
            command.upgrade(db.alembic_config(conn), "0001")
            for n, owner in enumerate(["oidc:" + "a" * 64, "anon:" + "g" * 24]):
                conn.execute(
                    text(
                        "INSERT INTO conversations (public_id, owner, created_at, updated_at) "
                        "VALUES (:id, :owner, :t, :t)"
                    ),
                    {"id": f"c{n}" + "x" * 30, "owner": owner, "t": datetime(2025, 1, 1)},
                )
        store.migrate()
        with store.engine.connect() as conn:
            rows = conn.execute(text("SELECT owner, limits_key FROM conversations")).all()
        assert rows and all(limits_key == owner for owner, limits_key in rows)
    finally:
        store.dispose()


def test_0003_adds_model_loads_and_goes_back_without_touching_conversations(database_url):
    store = ConversationStore(database_url)
    try:
        conv = store.create_conversation("oidc:" + "a" * 64)
        assert "model_loads" in inspect(store.engine).get_table_names()
        with store.engine.begin() as conn:
            command.downgrade(db.alembic_config(conn), "0002")
        assert "model_loads" not in inspect(store.engine).get_table_names()
        store.migrate()
        assert "model_loads" in inspect(store.engine).get_table_names()
        assert store.get_conversation("oidc:" + "a" * 64, conv.id).id == conv.id
    finally:
        store.dispose()


def test_no_connection_is_made_before_first_use(tmp_path):
    path = tmp_path / "later" / "chat.db"
    ConversationStore(f"sqlite:///{path}")
    assert not path.parent.exists()


def test_sqlite_file_and_parent_directories_are_created_in_wal_mode(tmp_path):
    path = tmp_path / "a" / "b" / "chat.db"
    store = ConversationStore(f"sqlite:///{path}")
    try:
        store.migrate()
        assert path.is_file()
        with store.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    finally:
        store.dispose()


@pytest.mark.parametrize(
    "url",
    [
        pytest.param("postgresql://app:s3cr3t-pw@127.0.0.1:1/chat", id="postgres-nobody-listening"),
        pytest.param("sqlite:////proc/no-such-dir/chat.db", id="sqlite-unwritable"),
        pytest.param("nosuchdb://app:s3cr3t-pw@host/x", id="unknown-driver"),
    ],
)
def test_unusable_database_is_a_plain_store_unavailable(url):
    store = ConversationStore(url)
    with pytest.raises(StoreUnavailable) as err:
        store.list_conversations("anon:" + "x" * 24)
    message = str(err.value)
    assert "s3cr3t" not in message and "127.0.0.1" not in message and "/proc" not in message
    assert "unavailable" in message
