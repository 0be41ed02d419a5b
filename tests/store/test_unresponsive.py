"""A database that accepts connections but never answers (issue 10.8): the first store call
waits the connect timeout, the calls that follow fail at once instead of each waiting again."""

from __future__ import annotations

import socket
import threading

import pytest

from tests.support.clock import Clock
from webapp.chat.limits import UsageLimits
from webapp.store import ConversationStore, PoolOptions, StoreUnavailable
from webapp.store import engine as db


class BlackHole:
    """A TCP server that accepts connections and never sends a byte; counts the accepts."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.accepted: list[socket.socket] = []
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted.append(conn)

    def close(self) -> None:
        self.sock.close()
        for c in self.accepted:
            c.close()


@pytest.fixture
def black_hole():
    hole = BlackHole()
    yield hole
    hole.close()


@pytest.mark.parametrize(
    ("steps", "open_after"),
    [
        ([], False),
        (["trip"], True),
        (["trip", "wait 14"], True),
        (["trip", "wait 16"], False),
        (["trip", "reset"], False),
        (["trip", "wait 16", "trip"], True),
    ],
)
def test_breaker(steps, open_after):
    clock = Clock()
    breaker = db.Breaker(cooldown_s=15, clock=clock)
    for step in steps:
        if step.startswith("wait"):
            clock.now += float(step.split()[1])
        else:
            getattr(breaker, step)()
    assert breaker.open is open_after
    if open_after:
        with pytest.raises(StoreUnavailable, match="not answering"):
            breaker.check()


def test_an_unresponsive_database_is_waited_for_once(black_hole):
    store = ConversationStore(
        f"postgresql://chat@127.0.0.1:{black_hole.port}/chat", pool=PoolOptions(connect_timeout_s=2)
    )
    clock = Clock()
    db._breakers[store.engine] = db.Breaker(cooldown_s=15, clock=clock)
    limits = UsageLimits(store, messages_per_minute=20, max_prompt_chars=1000, max_conversations=10)
    try:
        with pytest.raises(StoreUnavailable):
            store.list_conversations("alice")  # waits the connect timeout once
        tried = len(black_hole.accepted)
        assert tried >= 1
        # what a chat turn does next: none of it touches the database again
        calls = [
            lambda: store.create_conversation("alice"),
            lambda: store.add_message("alice", "c1", "user", "hi"),
            lambda: limits.record_message("alice"),
            lambda: limits.acquire_generation("alice"),
            lambda: store.checkpoint_many([("alice", 1, "partial")]),
        ]
        for call in calls:
            with pytest.raises(StoreUnavailable, match="not being saved"):
                call()
        assert len(black_hole.accepted) == tried
        clock.now += 16  # the cooldown is over: the next call asks the database again
        with pytest.raises(StoreUnavailable):
            store.list_conversations("alice")
        assert len(black_hole.accepted) > tried
    finally:
        store.dispose()


def test_a_working_database_never_opens_the_breaker(tmp_path):
    store = ConversationStore(f"sqlite:///{tmp_path / 'chat.db'}")
    conv = store.create_conversation("alice")
    assert store.get_conversation("alice", conv.id).id == conv.id
    assert not db.breaker(store.engine).open
    store.dispose()
