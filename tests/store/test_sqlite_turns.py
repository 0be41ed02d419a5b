"""SQLite under many threads of one process (``webapp.store.engine``): a read never waits
for a writer; the threads sharing an in-memory database take turns."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy import text

from webapp.store import engine as db
from webapp.store.errors import StoreUnavailable
from webapp.store.repository import ConversationStore

OWNER = "alice"


@pytest.fixture
def file_store(tmp_path) -> ConversationStore:
    return ConversationStore(f"sqlite:///{tmp_path / 'chat.db'}")


@contextmanager
def writer_holding(store: ConversationStore) -> Iterator[None]:
    """Another thread inside a write transaction (every title changed, not committed yet)
    until the block ends."""
    inside, done = threading.Event(), threading.Event()

    def write() -> None:
        with db.transaction(store.migrated_engine()) as conn:
            conn.execute(text("UPDATE conversations SET title = 'renamed by the writer'"))
            inside.set()
            done.wait(30)

    thread = threading.Thread(target=write, daemon=True)
    thread.start()
    assert inside.wait(10), "the writer did not begin"
    try:
        yield
    finally:
        done.set()
        thread.join(10)


def in_thread(fn) -> tuple[threading.Thread, dict]:
    out: dict = {}

    def run() -> None:
        try:
            out["value"] = fn()
        except Exception as exc:  # noqa: BLE001 - handed to the test
            out["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, out


def test_a_read_does_not_wait_for_a_writer(file_store):
    conv = file_store.create_conversation(OWNER, title="before")
    with writer_holding(file_store):
        reader, out = in_thread(lambda: file_store.get_conversation(OWNER, conv.id))
        reader.join(10)  # before: BEGIN IMMEDIATE waited for the writer (up to 30 s)
        assert not reader.is_alive(), "the read waited for the writer"
        assert out["value"].title == "before"  # what was committed, not the writer's change
    assert file_store.get_conversation(OWNER, conv.id).title == "renamed by the writer"


def test_threads_sharing_an_in_memory_database_take_turns():
    """One connection shared by every thread: reads take turns too (before: "cannot start a
    transaction within a transaction")."""
    store = ConversationStore("sqlite:///:memory:")
    conv = store.create_conversation(OWNER)
    errors: list[Exception] = []

    def work(role: str) -> None:
        try:
            for i in range(40):
                store.add_message(OWNER, conv.id, role, f"{role} {i}")
                store.get_conversation(OWNER, conv.id)
        except Exception as exc:  # noqa: BLE001 - collected for the assertion
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(r,)) for r in ("user", "assistant")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []
    assert len(store.get_conversation(OWNER, conv.id).messages) == 80


def test_a_thread_whose_turn_does_not_come_says_saving_is_busy(monkeypatch):
    store = ConversationStore("sqlite:///:memory:")
    conv = store.create_conversation(OWNER, title="before")
    monkeypatch.setattr(db, "SQLITE_BUSY_TIMEOUT_MS", 50)
    with writer_holding(store), pytest.raises(StoreUnavailable, match="busy right now"):
        store.get_conversation(OWNER, conv.id)
    assert store.get_conversation(OWNER, conv.id).title == "renamed by the writer"
