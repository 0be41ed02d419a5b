"""The chat's persistence facade: streaming answers are written behind the streams by one
writer per process, in one transaction per round, so a killed process loses only the last
fraction of a second, the streams never wait for the database, and many streams do not
fight over SQLite's single write lock."""

from __future__ import annotations

import threading
import time

import pytest

from webapp.access.identity import resolve_owner
from webapp.chat.history import CheckpointWriter, History
from webapp.chat.limits import UsageLimits
from webapp.store import ConversationStore, StoreUnavailable


def wait_until(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


class RecordingStore:
    """Stands in for ConversationStore.checkpoint_many: records each round (one transaction);
    with ``gate`` each round waits until it opens; ``fail`` makes rounds raise."""

    def __init__(self, gate: threading.Event | None = None, fail: Exception | None = None):
        self.gate = gate
        self.fail = fail
        self.rounds: list[dict[int, str]] = []
        self.in_progress = threading.Event()

    def checkpoint_many(self, items):
        self.in_progress.set()
        if self.gate is not None:
            self.gate.wait(10)
        self.in_progress.clear()
        if self.fail is not None:
            raise self.fail
        self.rounds.append({mid: text for _owner, mid, text in items})
        return []

    def latest(self, mid):
        return next((r[mid] for r in reversed(self.rounds) if mid in r), None)


def test_offers_never_wait_for_the_database_and_the_newest_text_wins():
    gate = threading.Event()
    store = RecordingStore(gate=gate)
    writer = CheckpointWriter(store, min_interval_s=0.0, heartbeat_s=60)
    writer.offer("u", 1, "t0 ", print)
    assert store.in_progress.wait(5)  # the first round hangs on a stuck database...
    text = "t0 "
    for i in range(1, 500):
        text += f"t{i} "
        writer.offer("u", 1, text, print)
    assert store.rounds == []  # ...and yet every offer returned
    gate.set()
    wait_until(lambda: store.latest(1) == text)
    assert [r[1] for r in store.rounds] == ["t0 ", text]  # coalesced, not one per token


def test_many_answers_share_one_transaction_per_round():
    gate = threading.Event()
    store = RecordingStore(gate=gate)
    writer = CheckpointWriter(store, min_interval_s=0.0, heartbeat_s=60)
    writer.offer("u0", 100, "first", print)
    assert store.in_progress.wait(5)
    for mid in range(32):
        writer.offer(f"u{mid}", mid, f"answer {mid}", print)
    gate.set()
    wait_until(lambda: all(store.latest(mid) == f"answer {mid}" for mid in range(32)))
    assert len(store.rounds) == 2
    assert set(store.rounds[1]) == set(range(32))


@pytest.mark.parametrize(
    ("offers", "expected_rounds"),
    [
        (["a"], 1),
        (["a", "a", "a"], 1),  # an unchanged text is not written again
        (["a", "ab"], 2),
    ],
)
def test_writes_only_changes(offers, expected_rounds):
    store = RecordingStore()
    writer = CheckpointWriter(store, min_interval_s=0.0, heartbeat_s=60)
    for text in offers:
        writer.offer("u", 1, text, print)
        wait_until(lambda text=text: store.latest(1) == text)
    time.sleep(0.1)
    assert len(store.rounds) == expected_rounds


def test_an_unchanged_answer_still_gets_a_heartbeat_until_forgotten():
    store = RecordingStore()
    writer = CheckpointWriter(store, min_interval_s=0.0, heartbeat_s=0.05)
    writer.offer("u", 1, "", print)  # e.g. a reasoning model that has not started its answer
    wait_until(lambda: len(store.rounds) >= 3)
    writer.forget(1)
    time.sleep(0.2)  # let a round in flight end
    seen = len(store.rounds)
    time.sleep(0.3)
    assert len(store.rounds) == seen


def test_a_failed_round_is_reported_to_each_answer_and_the_writer_goes_on():
    store = RecordingStore(fail=StoreUnavailable())
    writer = CheckpointWriter(store, min_interval_s=0.0, heartbeat_s=60)
    problems: list[str] = []
    writer.offer("u", 1, "a", problems.append)
    wait_until(lambda: problems)
    assert "unavailable" in problems[0]
    store.fail = None
    writer.offer("u", 1, "ab", problems.append)
    wait_until(lambda: store.latest(1) == "ab")


@pytest.fixture
def history(tmp_path):
    store = ConversationStore(f"sqlite:///{tmp_path / 'chat.db'}")
    limits = UsageLimits(store, messages_per_minute=100, max_prompt_chars=1000,
                         max_conversations=10)  # fmt: skip
    yield History(store, limits, resolve_owner(None, None))
    store.dispose()


def test_streaming_answer_reaches_the_database_while_it_streams_and_ends_final(history):
    conv = history.start()
    history.add(conv, "user", "Tell me a story")
    message_id = history.begin_answer(conv, "Once")
    text = "Once"
    for word in ["upon", "a", "time"]:
        text += " " + word
        history.checkpoint(message_id, text)

    def saved():
        return history.open(conv).messages[-1]

    # written without the page doing anything else: what a killed process leaves
    wait_until(lambda: saved().content == "Once upon a time")
    assert saved().status == "streaming"
    history.finish_answer(message_id, content=text + ".", status="stopped")
    assert (saved().content, saved().status) == ("Once upon a time.", "stopped")
    assert history.problem is None


def test_finish_is_never_overtaken_by_a_late_checkpoint(history):
    conv = history.start()
    message_id = history.begin_answer(conv, "")
    for i in range(200):
        history.checkpoint(message_id, "x" * i)
    history.finish_answer(message_id, content="final", status="complete")
    history.checkpoint(message_id, "late")  # e.g. a delta drawn after the end: ignored
    time.sleep(0.5)
    last = history.open(conv).messages[-1]
    assert (last.content, last.status) == ("final", "complete")


def test_a_database_failure_while_streaming_is_recorded_not_raised(history, monkeypatch):
    conv = history.start()
    message_id = history.begin_answer(conv, "a")

    def unavailable(*_args, **_kwargs):
        raise StoreUnavailable()

    monkeypatch.setattr(history.store, "checkpoint_many", unavailable)
    monkeypatch.setattr(history.store, "update_message", unavailable)
    history.checkpoint(message_id, "ab")
    wait_until(lambda: history.problem is not None)
    history.finish_answer(message_id, content="abc", status="complete")
    assert "unavailable" in history.problem


def test_an_over_long_system_prompt_is_refused_before_anything_is_counted(tmp_path):
    """Issue 10.2: checked like a message (the page calls this before saving or sending)."""
    from webapp.store import PromptTooLong

    store = ConversationStore(f"sqlite:///{tmp_path / 'chat.db'}")
    limits = UsageLimits(store, messages_per_minute=1, max_prompt_chars=100, max_conversations=5)
    history = History(store, limits, resolve_owner(None, "Zx9" * 8))
    with pytest.raises(PromptTooLong, match="Your system prompt is 300 characters long"):
        history.admit_message("hello", "s" * 300)
    history.admit_message("hello", "s" * 100)  # the refusal counted nothing: one fits
    store.dispose()


def test_a_conversation_deleted_under_an_answer_is_a_plain_problem_not_a_crash(tmp_path):
    """Issue 10.4: the owner deletes the conversation while a link holder's answer streams:
    every later write says so in plain words instead of raising."""
    from webapp.chat.history import DELETED

    store = ConversationStore(f"sqlite:///{tmp_path / 'chat.db'}")
    limits = UsageLimits(store, messages_per_minute=5, max_prompt_chars=100, max_conversations=5)
    owner = resolve_owner(None, "Zx9" * 8)
    history = History(store, limits, owner)
    conv = history.start()
    answer = history.begin_answer(conv, "partial")
    store.delete(owner.key, conv)
    history.checkpoint(answer, "partial and more")
    history.finish_answer(answer, content="partial and more", status="complete")
    assert history.add(conv, "user", "next") is None
    history.truncate_after(conv, answer)
    assert history.problem == DELETED
    store.dispose()
