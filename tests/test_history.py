"""The chat's persistence facade: a streaming answer is written behind the stream by a
background writer, so a killed process loses only the last fraction of a second and
the stream never waits for the database."""

from __future__ import annotations

import threading
import time

import pytest

from webapp.history import AnswerSaver, History
from webapp.identity import resolve_owner
from webapp.limits import UsageLimits
from webapp.store import ConversationStore


def wait_until(predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


class SlowWrites:
    """Records writes; each write takes ``delay_s`` or, with ``gate``, waits until it opens."""

    def __init__(self, delay_s: float = 0.0, gate: threading.Event | None = None) -> None:
        self.delay_s = delay_s
        self.gate = gate
        self.texts: list[str] = []
        self.in_progress = threading.Event()

    def __call__(self, text: str) -> None:
        self.in_progress.set()
        if self.gate is not None:
            self.gate.wait(10)
        time.sleep(self.delay_s)
        self.texts.append(text)
        self.in_progress.clear()


def test_offers_never_wait_for_the_database_and_the_newest_text_wins():
    gate = threading.Event()
    writes = SlowWrites(gate=gate)
    saver = AnswerSaver(writes, min_interval_s=0.0, heartbeat_s=60)
    saver.offer("t0 ")
    assert writes.in_progress.wait(5)  # the first write hangs on a stuck database...
    text = "t0 "
    for i in range(1, 500):
        text += f"t{i} "
        saver.offer(text)
    assert writes.texts == []  # ...and yet every offer returned
    gate.set()
    wait_until(lambda: writes.texts and writes.texts[-1] == text)
    saver.close()
    assert writes.texts == ["t0 ", text]  # coalesced: the newest text, not one write per token


@pytest.mark.parametrize(
    ("min_interval_s", "offers", "expected_writes"),
    [
        (0.0, ["a"], 1),
        (0.0, ["a", "a", "a"], 1),  # an unchanged text is not written again
        (10.0, ["a"], 1),  # the first write is not delayed by the interval
    ],
)
def test_writes_only_changes(min_interval_s, offers, expected_writes):
    writes = SlowWrites()
    saver = AnswerSaver(writes, min_interval_s=min_interval_s, heartbeat_s=60)
    for text in offers:
        saver.offer(text)
        time.sleep(0.05)
    wait_until(lambda: len(writes.texts) >= expected_writes)
    time.sleep(0.1)
    saver.close()
    assert len(writes.texts) == expected_writes


def test_an_unchanged_answer_still_gets_a_heartbeat():
    writes = SlowWrites()
    saver = AnswerSaver(writes, min_interval_s=0.0, heartbeat_s=0.05)
    saver.offer("")  # e.g. a reasoning model that has not started its answer
    wait_until(lambda: len(writes.texts) >= 3)
    saver.close()


def test_close_waits_for_the_write_in_progress():
    writes = SlowWrites(delay_s=0.3)
    saver = AnswerSaver(writes, min_interval_s=0.0, heartbeat_s=60)
    saver.offer("partial")
    assert writes.in_progress.wait(2)
    saver.close()
    assert writes.texts == ["partial"]
    assert not saver._thread.is_alive()


def test_close_without_any_offer_ends_the_writer():
    saver = AnswerSaver(SlowWrites(), min_interval_s=0.0, heartbeat_s=60)
    closing = threading.Thread(target=saver.close)
    closing.start()
    closing.join(10)
    assert not closing.is_alive() and not saver._thread.is_alive()


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
    assert history._savers == {}
    assert history.problem is None


def test_finish_is_never_overtaken_by_a_late_checkpoint(history):
    conv = history.start()
    message_id = history.begin_answer(conv, "")
    for i in range(200):
        history.checkpoint(message_id, "x" * i)
    history.finish_answer(message_id, content="final", status="complete")
    time.sleep(0.3)
    last = history.open(conv).messages[-1]
    assert (last.content, last.status) == ("final", "complete")


def test_a_database_failure_while_streaming_is_recorded_not_raised(history, monkeypatch):
    conv = history.start()
    message_id = history.begin_answer(conv, "a")
    history.store.dispose()
    monkeypatch.setattr(history.store, "update_message", _unavailable)
    history.checkpoint(message_id, "ab")
    wait_until(lambda: history.problem is not None)
    history.finish_answer(message_id, content="abc", status="complete")
    assert "unavailable" in history.problem


def _unavailable(*_args, **_kwargs):
    from webapp.store import StoreUnavailable

    raise StoreUnavailable()
