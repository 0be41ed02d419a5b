"""Stale-while-revalidate for one process's slow reads (the chat's model pools, the model
server's health and models; the admin's GKE node-pool list): a page run gets the last answer at once and the read is
made again in the background, so no page run — above all not the one that sends a
message — waits for an HTTP round trip once a first answer exists.

Every session of the process shares one cache: a key's read is in flight at most once,
whoever asks. A read is waited for only when nothing usable is known: the first read, a
read after ``forget`` (the caller knows the answer may be wrong: a failed answer, a model
switch), or an answer older than ``max_stale_s``. No Streamlit here (unit-tested).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

V = TypeVar("V")

#: marks "no value known" (None may be a value)
MISSING: Any = object()


@dataclass(eq=False)
class _Entry:
    at: float  # when ``value`` was read (or the placeholder made)
    value: Any = MISSING
    future: Future | None = None  # the read in flight, at most one


@dataclass(eq=False)
class StaleWhileRevalidate(Generic[V]):
    """Answers by key. ``get`` returns a value read less than ``ttl_s`` ago as is; an
    older one at once while it is younger than ``max_stale_s`` (None: however old),
    starting one background read; else it waits for the read, at most ``wait_s`` (None:
    as long as the read takes — its own timeouts bound it).

    A read that raises leaves the last value (and its age) in place: it is served while
    young enough, the next ``get`` after ``ttl_s`` reads again, and a caller who waits
    gets the error."""

    max_stale_s: float | None = None
    wait_s: float | None = None
    clock: Callable[[], float] = time.monotonic
    workers: int = 2
    name: str = "revalidate"
    _entries: dict[Hashable, _Entry] = field(default_factory=dict, init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False)
    _pool: ThreadPoolExecutor = field(init=False)

    def __post_init__(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix=self.name)

    def get(
        self, key: Hashable, read: Callable[[], V], *, ttl_s: float, fallback: V = MISSING
    ) -> V:
        """``key``'s answer (see the class). ``fallback``: what a caller gets when its wait
        runs out — and, while the first read is in flight, what the other callers get at
        once, instead of waiting too. Without it a caller waits for the read in flight and
        gets its value or its error (a wait that runs out: ``TimeoutError``)."""
        with self._lock:
            now = self.clock()
            entry = self._entries.get(key)
            known = entry is not None and entry.value is not MISSING
            if known and entry.future is None and now - entry.at < ttl_s:
                return entry.value  # fresh
            if entry is None:  # first read: the others get the fallback meanwhile, if any
                entry = self._entries[key] = _Entry(now, fallback)
            if entry.future is None:
                entry.future = self._pool.submit(self._refresh, key, entry, read)
            future = entry.future
            if known and self._young(entry, now):
                return entry.value  # stale: at once, read anew in the background
        try:
            return future.result(timeout=self.wait_s)
        except FutureTimeout:
            if fallback is MISSING:
                raise TimeoutError(f"no answer within {self.wait_s} s") from None
            return fallback

    def forget(self, key: Hashable | None = None) -> None:
        """The next ``get`` of ``key`` (None: of every key) waits for a new read; a read
        already in flight is not reused and its answer is not kept."""
        with self._lock:
            if key is None:
                self._entries.clear()
            else:
                self._entries.pop(key, None)

    def _young(self, entry: _Entry, now: float) -> bool:
        return self.max_stale_s is None or now - entry.at < self.max_stale_s

    def _refresh(self, key: Hashable, entry: _Entry, read: Callable[[], V]) -> V:
        try:
            value = read()
        except BaseException:
            with self._lock:
                if self._entries.get(key) is entry:
                    entry.future = None  # the last value stays, as old as it was
            raise
        with self._lock:
            if self._entries.get(key) is entry:  # not forgotten meanwhile
                self._entries[key] = _Entry(self.clock(), value)
        return value
