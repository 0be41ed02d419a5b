"""Stale-while-revalidate for the chat's slow reads: the first read is waited for, a stale
answer is served at once with one read in the background, concurrent callers share one
read, ``forget`` forces a waited read, and a failing read keeps the last good answer until
it is too old (then its error is raised to the caller)."""

from __future__ import annotations

import threading

import pytest

from tests.support.clock import Clock
from webapp.revalidate import StaleWhileRevalidate

TTL = 10.0


class Source:
    """A read whose answer the test sets; counts reads; ``gate`` holds them (a slow
    server); ``fail`` makes them raise."""

    def __init__(self, value: object = "v1") -> None:
        self.value = value
        self.reads = 0
        self.fail: Exception | None = None
        self.gate = threading.Event()
        self.gate.set()
        self.started = threading.Event()  # a read began (it may be held at the gate)

    def __call__(self) -> object:
        self.reads += 1
        self.started.set()
        assert self.gate.wait(5), "the test never opened the gate"
        if self.fail:
            raise self.fail
        return self.value


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def src():
    s = Source()
    yield s
    s.gate.set()  # no thread is left waiting


def cache(clock, **kw) -> StaleWhileRevalidate:
    kw.setdefault("max_stale_s", 30.0)
    return StaleWhileRevalidate(clock=clock, **kw)


def in_thread(fn):
    """Run ``fn`` in a thread; returns (thread, results) — results gets its value or error."""
    results: list[object] = []

    def run():
        try:
            results.append(fn())
        except Exception as exc:  # noqa: BLE001 - handed to the test
            results.append(exc)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, results


def eventually(check, tries=300):
    for _ in range(tries):
        if check():
            return True
        threading.Event().wait(0.01)
    return False


def test_the_first_read_is_waited_for(clock, src):
    swr = cache(clock)
    src.gate.clear()
    t, got = in_thread(lambda: swr.get("k", src, ttl_s=TTL))
    assert src.started.wait(5)
    t.join(0.2)
    assert t.is_alive() and got == []  # the caller waits: nothing is known yet
    src.gate.set()
    t.join(5)
    assert got == ["v1"] and src.reads == 1


def test_a_fresh_answer_is_not_read_again(clock, src):
    swr = cache(clock)
    assert swr.get("k", src, ttl_s=TTL) == "v1"
    clock.now += TTL - 0.1
    assert swr.get("k", src, ttl_s=TTL) == "v1"
    assert src.reads == 1


def test_a_stale_answer_is_served_at_once_and_read_once_in_the_background(clock, src):
    swr = cache(clock)
    swr.get("k", src, ttl_s=TTL)
    clock.now += TTL + 1
    src.value, src.started = "v2", threading.Event()
    src.gate.clear()  # the server is slow: the page must not wait for it
    assert swr.get("k", src, ttl_s=TTL) == "v1"
    assert src.started.wait(5)
    assert swr.get("k", src, ttl_s=TTL) == "v1"  # another run meanwhile: no second read
    assert src.reads == 2
    src.gate.set()
    assert eventually(lambda: swr.get("k", src, ttl_s=TTL) == "v2")
    assert src.reads == 2  # the new answer is fresh: not read again


@pytest.mark.parametrize("known", [False, True], ids=["first read", "stale"])
def test_concurrent_callers_start_one_read(clock, src, known):
    swr = cache(clock)
    if known:
        swr.get("k", src, ttl_s=TTL)
        clock.now += TTL + 1
    src.gate.clear()
    callers = [in_thread(lambda: swr.get("k", src, ttl_s=TTL)) for _ in range(8)]
    assert src.started.wait(5)
    src.value = "v2"
    if known:  # each caller got the last answer at once, while the read is held
        for t, _ in callers:
            t.join(5)
    src.gate.set()
    for t, _ in callers:
        t.join(5)
    assert src.reads == (2 if known else 1)
    # nothing known: every caller waited for the one read
    assert [got for _, got in callers] == [["v1" if known else "v2"]] * 8


def test_keys_are_read_apart(clock, src):
    swr = cache(clock)
    assert swr.get("a", lambda: "A", ttl_s=TTL) == "A"
    assert swr.get("b", lambda: "B", ttl_s=TTL) == "B"
    assert swr.get("a", src, ttl_s=TTL) == "A"


def test_forget_makes_the_next_caller_wait_for_a_new_read(clock, src):
    swr = cache(clock)
    swr.get("k", src, ttl_s=TTL)
    swr.forget()
    src.value, src.started = "v2", threading.Event()
    src.gate.clear()
    t, got = in_thread(lambda: swr.get("k", src, ttl_s=TTL))
    assert src.started.wait(5)
    t.join(0.2)
    assert t.is_alive()  # no stale answer after forget: it waits
    src.gate.set()
    t.join(5)
    assert got == ["v2"] and src.reads == 2


def test_a_read_started_before_forget_is_neither_reused_nor_kept(clock, src):
    swr = cache(clock)
    swr.get("k", src, ttl_s=TTL)
    clock.now += TTL + 1
    src.gate.clear()
    assert swr.get("k", src, ttl_s=TTL) == "v1"  # a background read starts, held
    assert src.started.wait(5)
    swr.forget("k")
    newer = Source("v3")
    assert swr.get("k", newer, ttl_s=TTL) == "v3"  # a read of its own, waited for
    src.gate.set()  # the old read ends now, with the old answer
    threading.Event().wait(0.1)
    assert swr.get("k", newer, ttl_s=TTL) == "v3" and newer.reads == 1


def test_a_first_read_that_fails_is_raised_and_not_kept(clock, src):
    swr = cache(clock)
    src.fail = ConnectionError("refused")
    with pytest.raises(ConnectionError):
        swr.get("k", src, ttl_s=TTL)
    src.fail = None
    assert swr.get("k", src, ttl_s=TTL) == "v1"  # the next run reads again
    assert src.reads == 2


def test_a_failing_refresh_keeps_the_last_answer_until_it_is_too_old(clock, src):
    swr = cache(clock, max_stale_s=30.0)
    swr.get("k", src, ttl_s=TTL)
    src.fail = ConnectionError("refused")
    clock.now += TTL + 1
    assert swr.get("k", src, ttl_s=TTL) == "v1"  # served; the read fails in the background
    assert eventually(lambda: src.reads == 2)
    clock.now += 10  # 21 s old: still served, one more read tried
    assert swr.get("k", src, ttl_s=TTL) == "v1"
    assert eventually(lambda: src.reads == 3)
    clock.now += 10  # 31 s old: too old to show, the caller waits and gets the error
    assert eventually(lambda: swr._entries["k"].future is None)
    with pytest.raises(ConnectionError):
        swr.get("k", src, ttl_s=TTL)
    src.fail = None
    assert swr.get("k", src, ttl_s=TTL) == "v1" and src.reads == 5  # back: read, waited for


def test_an_answer_too_old_is_waited_for(clock, src):
    swr = cache(clock, max_stale_s=30.0)
    swr.get("k", src, ttl_s=TTL)
    clock.now += 31  # e.g. the first run after a quiet spell
    src.value = "v2"
    src.gate.clear()
    t, got = in_thread(lambda: swr.get("k", src, ttl_s=TTL))
    t.join(0.2)
    assert t.is_alive()
    src.gate.set()
    t.join(5)
    assert got == ["v2"]


def test_without_a_bound_a_stale_answer_is_served_however_old(clock, src):
    swr = cache(clock, max_stale_s=None)
    swr.get("k", src, ttl_s=TTL)
    clock.now += 10_000
    src.gate.clear()
    assert swr.get("k", src, ttl_s=TTL) == "v1"


@pytest.mark.parametrize(
    ("fallback", "expected"), [(None, None), ("unknown", "unknown"), (..., TimeoutError)]
)
def test_a_bounded_wait_gives_the_fallback_or_times_out(clock, src, fallback, expected):
    swr = cache(clock, wait_s=0.05)
    src.gate.clear()
    kw = {} if fallback is ... else {"fallback": fallback}
    if expected is TimeoutError:
        with pytest.raises(TimeoutError):
            swr.get("k", src, ttl_s=TTL, **kw)
        return
    assert swr.get("k", src, ttl_s=TTL, **kw) == expected
    # meanwhile, the others get the fallback at once and share the read in flight
    assert swr.get("k", src, ttl_s=TTL, **kw) == expected and src.reads == 1
    src.gate.set()
    assert eventually(lambda: swr.get("k", src, ttl_s=TTL, **kw) == "v1")
