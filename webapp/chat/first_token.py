"""Waiting for an answer's first piece without going silent: the model server's queue.

Reading a stream blocks until the server sends something, and a busy vLLM server sends
nothing while the request waits in its queue. ``FirstPiece`` reads the first piece in a
thread of its own, so that the turn stays free meanwhile: when nothing has arrived after
``after_s``, a second thread reads the server's queue length every ``every_s`` and the turn
hands each reading on (``readings``) until the first piece is there. The stream itself is
never slowed: after its first piece the turn reads it directly, as before.

If the turn ends while the first piece is still awaited (Stop, browser gone), the reader
is ``abandon``-ed: it closes the stream itself once the read returns (the first piece, an
error, or the client's read timeout), because a generator cannot be closed by another
thread while it runs. vLLM then aborts the request.
"""

from __future__ import annotations

import contextvars
import queue
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol


class Stream(Protocol):
    """An answer's stream of text pieces that can be closed (``webapp.llm.chat.Generation``)."""

    def __iter__(self) -> Iterator[str]: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class _Arrived:
    """The first read returned (a piece, the stream's end or an error)."""


@dataclass(frozen=True)
class _Reading:
    waiting: int | None


class FirstPiece:
    """The first piece of ``stream``, read in a thread started at once; ``returned`` (when
    given) is set when that read returns."""

    def __init__(self, stream: Stream, returned: threading.Event | None = None) -> None:
        self._stream = stream
        self._returned = returned
        self._events: queue.SimpleQueue[_Arrived | _Reading] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._done = False
        self._abandoned = False
        self._piece: str | None = None
        self._error: BaseException | None = None
        # the caller's context variables, as if the caller read the stream itself
        context = contextvars.copy_context()
        threading.Thread(
            target=context.run, args=(self._read,), name="first-piece", daemon=True
        ).start()

    def _read(self) -> None:
        piece, error = None, None
        try:
            piece = next(iter(self._stream), None)
        except BaseException as exc:  # noqa: BLE001 - handed to the turn's thread by result()
            error = exc
        with self._lock:
            self._piece, self._error, self._done = piece, error, True
            abandoned = self._abandoned
        self._events.put(_Arrived())
        if self._returned is not None:
            self._returned.set()
        if abandoned:
            self._stream.close()  # nobody reads on: end the request (vLLM aborts it)

    def readings(
        self, read_waiting: Callable[[], int | None], after_s: float, every_s: float
    ) -> Iterator[int | None]:
        """Nothing when the first piece arrives within ``after_s``; else ``read_waiting()``
        every ``every_s`` until it arrives (each reading as soon as it is made; None when
        the queue could not be read). Close this iterator to stop the readings."""
        try:
            if isinstance(self._events.get(timeout=after_s), _Arrived):
                return
        except queue.Empty:
            pass
        stop = threading.Event()
        threading.Thread(
            target=self._poll, args=(read_waiting, every_s, stop), name="queue-poll", daemon=True
        ).start()
        try:
            while isinstance(event := self._events.get(), _Reading):
                yield event.waiting
        finally:
            stop.set()

    def _poll(
        self, read_waiting: Callable[[], int | None], every_s: float, stop: threading.Event
    ) -> None:
        while not stop.is_set():
            try:
                waiting = read_waiting()
            except Exception:  # noqa: BLE001 - an unreadable queue is no number, never an error
                waiting = None
            if not stop.is_set():
                self._events.put(_Reading(waiting))
            stop.wait(every_s)

    def result(self) -> str | None:
        """The first piece (None: the stream ended without one), or the read's error.
        Only after ``readings`` ended because the piece arrived."""
        with self._lock:
            if not self._done:
                raise RuntimeError("the first piece has not arrived")
            if self._error is not None:
                raise self._error
            return self._piece

    def abandon(self) -> bool:
        """The turn ends without the piece: True when the read is still running (the
        reader then closes the stream itself, and the caller must not); False when it
        returned already (the caller closes the stream as usual)."""
        with self._lock:
            if self._done:
                return False
            self._abandoned = True
            return True
