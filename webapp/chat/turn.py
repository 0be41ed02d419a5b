"""One chat turn as a stream of typed events: the whole answer flow, without Streamlit.

``run_turn`` takes the user's answer slot (or says why not), streams the answer from the
model (following a model switch made meanwhile), hands its growing text to the checkpoint
writer, saves how it ended and frees the slot, whatever happened. The page only draws the
events; when it stops drawing (Stop pressed, browser gone) it calls ``cancel``, which throws
``TurnCancelled`` into the turn so that the partial answer is kept and marked for it.

Events, in order: ``Refused`` alone; or ``Started`` (the request already sent, so that
drawing the answer's place does not delay it), then ``ModelSwitched`` at most once,
``Waiting`` while the first piece is late (``BusyWatch``), ``Reasoning``/``Delta`` for each
piece, the first one and then at most one every ``CHECKPOINT_EVERY_S`` followed by
``Checkpointed``, one final ``Delta``, and exactly one ending: ``Finished``, ``Stopped``,
``Interrupted`` or ``Failed``.

The answer is the dict the page keeps in its session (role, content, status, meta, id,
error, reasoning): appended to ``messages`` at ``Started`` and changed in place, so a page
rerun redraws it as it is, however the turn ended.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import threading
import time
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from typing import Any

from webapp.chat.errors import TurnCancelled
from webapp.chat.first_token import FirstPiece
from webapp.chat.history import CHECKPOINT_EVERY_S, History
from webapp.chat.messages import llm_error_message
from webapp.chat.options import GenerationOptions
from webapp.llm.chat import ChatClient, ChatRequest, Generation
from webapp.llm.errors import BackendUnreachable, LLMError, ModelNotFound
from webapp.llm.prompts import Turn
from webapp.llm.sse import noting_response
from webapp.store import LimitExceeded

Answer = dict[str, Any]


@dataclass(frozen=True)
class Refused:
    """No answer now: a limit (one answer at a time, the app's maximum, the system prompt's
    length); ``reason`` is the plain-language message."""

    reason: str


@dataclass(frozen=True)
class Started:
    answer: Answer


@dataclass(frozen=True)
class ModelSwitched:
    """The server serves another model than the page had listed: the answer comes from it."""

    old: str
    new: str


@dataclass(frozen=True)
class Waiting:
    """No answer yet, after ``BusyWatch.after_s``: ``ahead`` requests wait before this one
    in the model server's queue (None: the queue could not be read). Sent again after each
    reading of the queue, until the first piece arrives."""

    ahead: int | None


#: how long a turn waits for its request to reach the server before it goes on (``_send``)
SEND_WAIT_S = 0.2


@dataclass(frozen=True)
class BusyWatch:
    """When to read the model server's queue while an answer's first piece is late."""

    after_s: float = 2.0
    every_s: float = 2.0


@dataclass(frozen=True)
class Reasoning:
    """The model's thinking so far (before its answer)."""

    text: str


@dataclass(frozen=True)
class Delta:
    """The answer so far (``text``) and what just arrived (``piece``); ``final``: the
    stream ended and ``text`` is the whole answer, before any bookkeeping."""

    text: str
    piece: str = ""
    final: bool = False


@dataclass(frozen=True)
class Checkpointed:
    """The text so far was handed to the store (``message_id`` None: it is not saved)."""

    message_id: int | None


@dataclass(frozen=True)
class Finished:
    """Complete, or cut at the max-tokens limit (``answer["status"]`` says which)."""

    answer: Answer


@dataclass(frozen=True)
class Stopped:
    answer: Answer


@dataclass(frozen=True)
class Interrupted:
    """The browser went away mid-answer: the part received is kept."""

    answer: Answer


@dataclass(frozen=True)
class Failed:
    answer: Answer
    error: LLMError


Event = (
    Refused | Started | ModelSwitched | Waiting | Reasoning | Delta | Checkpointed
    | Finished | Stopped | Interrupted | Failed
)  # fmt: skip
TurnEvents = Generator[Event, None, None]


def turns_of(messages: Sequence[Answer]) -> tuple[Turn, ...]:
    """The conversation as the model sees it (empty and non-chat messages left out)."""
    return tuple(
        Turn(m["role"], m["content"])
        for m in messages
        if m["role"] in ("user", "assistant") and m["content"].strip()
    )


@dataclass
class _Stream:
    """The turn's current ``Generation`` (None until the request is made); ``abandoned``:
    its first piece is still being read by a ``FirstPiece``, which closes it."""

    gen: Generation | None = None
    reader: FirstPiece | None = None
    abandoned: bool = False

    def sent(self) -> tuple[Generation, FirstPiece | None]:
        """The stream ``_send`` made and its first piece's reader (None: read it directly)."""
        if self.gen is None:
            raise RuntimeError("no request was sent")
        return self.gen, self.reader


def run_turn(
    history: History,
    client: ChatClient,
    options: GenerationOptions,
    messages: list[Answer],
    conversation_id: str | None,
    *,
    follow_switch: bool = True,
    busy: BusyWatch | None = None,
    save_question: Callable[[], str | None] | None = None,
) -> TurnEvents:
    """Answer the last user message in ``messages`` (see the module docstring).

    ``follow_switch``: when the model is gone (HTTP 404), answer with the one the server
    lists now; False when the app is pinned to one model (``LLM_NAME``). ``busy``: say
    how busy the server is while the first piece is late (None: wait in silence).
    ``save_question``: saves a question not saved yet and returns its conversation's id (a
    new conversation's: ``conversation_id`` is then None); called once the request is sent,
    so the server works on it meanwhile, or before the turn is refused.
    """
    try:
        history.limits.check_system_prompt(options.system_prompt)  # Regenerate skips submit
        lease = history.acquire()
    except LimitExceeded as e:
        if save_question is not None:
            save_question()  # the question stays on screen, saved, with Retry under it
        with contextlib.suppress(TurnCancelled):  # a cancel after the end: nothing to do
            yield Refused(str(e))
        return
    answer: Answer = {"role": "assistant", "content": "", "status": "streaming", "meta": {},
                      "id": None}  # fmt: skip
    turns = turns_of(messages)
    messages.append(answer)
    stream, cancelled, error = _Stream(), None, None
    try:
        request = None if options.model is None else options.request(turns)
        if request is not None:  # sent before the page draws the answer's bubble
            _send(client, request, stream, busy)
        if save_question is not None:
            conversation_id = save_question()
        yield Started(answer)
        if request is None:
            raise BackendUnreachable("no model is served")
        yield from _answer(history, client, request, stream, answer, conversation_id,
                           follow_switch, busy)  # fmt: skip
    except TurnCancelled as c:
        cancelled = c
    except LLMError as e:
        error = e
        _fail(answer, e)
    finally:
        try:
            _save_end(history, conversation_id, answer, stream, cancelled)
        finally:
            history.release(lease)  # whatever happened while saving: the slot is freed
    with contextlib.suppress(TurnCancelled):  # a cancel after the end: nothing to do
        yield _ending(answer, error)


def cancel(turn: TurnEvents, *, browser_gone: bool) -> Event | None:
    """End ``turn`` from outside (Stop, browser gone): its ending event, or None when it
    had already ended. The turn is closed afterwards."""
    try:
        return turn.throw(TurnCancelled(browser_gone=browser_gone))
    except (StopIteration, TurnCancelled):
        return None
    finally:
        turn.close()


def _answer(
    history: History,
    client: ChatClient,
    request: ChatRequest,
    stream: _Stream,
    answer: Answer,
    conversation_id: str | None,
    follow_switch: bool,
    busy: BusyWatch | None,
) -> Generator[Event, None, None]:
    """The answer to ``request``, already sent by ``_send``."""
    try:
        first = yield from _first_piece(client, stream, busy)
    except ModelNotFound:
        # the admin switched the served model since the page listed it: follow it
        switched = _switched_model(client, request, follow_switch)
        yield ModelSwitched(request.model, switched.model)
        _send(client, switched, stream, busy)
        first = yield from _first_piece(client, stream, busy)
    gen, _ = stream.sent()
    handed = float("-inf")  # when the text was last handed to the store
    for piece in itertools.chain([] if first is None else [first], gen):
        answer["content"] = gen.text
        yield Delta(gen.text, piece) if piece or not gen.reasoning else Reasoning(gen.reasoning)
        # saved after drawing, so the database never delays what the user sees; at the
        # writer's cadence, not per piece (the writer saves no more often anyway): the
        # final save in ``run_turn`` keeps all of it whatever ends the turn
        now = time.monotonic()
        if now - handed < CHECKPOINT_EVERY_S:
            continue
        handed = now
        if answer["id"] is None:
            answer["id"] = history.begin_answer(conversation_id, gen.text)
        else:
            history.checkpoint(answer["id"], gen.text)
        yield Checkpointed(answer["id"])
    yield Delta(gen.text, final=True)
    answer["status"] = "cut" if gen.stats.finish_reason == "length" else "complete"


def _send(
    client: ChatClient, request: ChatRequest, stream: _Stream, busy: BusyWatch | None
) -> None:
    """Make ``request`` the turn's stream. With ``busy`` it is sent now: its first piece is
    read in a thread of its own (``FirstPiece``) while the turn goes on; without, it is
    sent when ``_first_piece`` reads it.

    Sent now, it is awaited until the server has answered with headers, or the read has
    returned (at most ``SEND_WAIT_S``), before the turn goes on: the thread that sends it
    shares the interpreter with the page drawn meanwhile, and drawing first delayed the
    request by 4-16 ms (bench/RESULTS.md 2g); sending takes ~2 ms on its own."""
    stream.gen = client.stream(request)
    if busy is None:
        stream.reader = None
        return
    responded = threading.Event()
    with noting_response(responded):
        stream.reader = FirstPiece(stream.gen, returned=responded)
    responded.wait(SEND_WAIT_S)


def _first_piece(
    client: ChatClient, stream: _Stream, busy: BusyWatch | None
) -> Generator[Event, None, str | None]:
    """The stream's first piece; meanwhile, once it is late, ``Waiting`` after each reading
    of the server's queue (see ``webapp.chat.first_token``). A turn that ends meanwhile
    leaves the read to its reader (``_save_end``)."""
    gen, reader = stream.sent()
    if reader is None or busy is None:
        return next(iter(gen), None)
    readings = reader.readings(client.requests_waiting, busy.after_s, busy.every_s)
    with contextlib.closing(readings):
        for waiting in readings:
            yield Waiting(_ahead(waiting))
    return reader.result()


def _ahead(waiting: int | None) -> int | None:
    """Requests ahead of this one: vLLM serves its queue first come, first served, and a
    request whose first piece is late is most likely waiting in it itself, so the others
    waiting are at most those ahead of it."""
    return None if waiting is None else max(0, waiting - 1)


def _switched_model(client: ChatClient, request: ChatRequest, follow: bool) -> ChatRequest:
    """The same request for the model now served, or raise ModelNotFound again: also when
    the model is still listed (a pool named in LLM_MODELS that does not answer), as
    answering from another model would be a silent switch."""
    fresh = client.models() if follow else []
    if not fresh or request.model in {m.id for m in fresh}:
        raise ModelNotFound(404, f"{request.model} is not served")
    return dataclasses.replace(request, model=fresh[0].id, max_model_len=fresh[0].max_model_len)


def _fail(answer: Answer, err: LLMError) -> None:
    answer["content"] = err.partial_text or answer["content"]
    answer["status"] = "interrupted" if answer["content"] else "failed"
    answer["error"] = llm_error_message(err)


def _save_end(
    history: History,
    conversation_id: str | None,
    answer: Answer,
    stream: _Stream,
    cancelled: TurnCancelled | None,
) -> None:
    """Mark and save how an answer ended. Still "streaming" here only when the turn was
    cancelled (Stop, browser gone) or broke: keep the partial answer, marked for it."""
    ended, gen = None, stream.gen
    if stream.reader is not None:  # its first piece still awaited: the reader closes it
        stream.abandoned = stream.reader.abandon()
    if answer["status"] == "streaming":
        if cancelled is not None and cancelled.browser_gone:
            answer["status"], ended = "interrupted", "app"
        else:
            answer["status"] = "stopped"
    if gen is not None:
        answer["content"] = answer["content"] or gen.text
        if not stream.abandoned:  # else its first-piece reader closes it
            gen.close()
        answer["meta"] = gen.stats.as_dict()
        if gen.reasoning:
            answer["reasoning"] = answer["meta"]["reasoning"] = gen.reasoning
    if ended:
        answer["meta"]["ended"] = ended
    meta = {**answer["meta"], "error": answer.get("error")}
    if answer["id"] is None:
        answer["id"] = history.add(
            conversation_id, "assistant", answer["content"], answer["status"], meta
        )
    else:
        history.finish_answer(
            answer["id"], content=answer["content"], status=answer["status"], meta=meta
        )


def _ending(answer: Answer, error: LLMError | None) -> Event:
    if error is not None:
        return Failed(answer, error)
    if answer["status"] == "stopped":
        return Stopped(answer)
    if answer["status"] == "interrupted":
        return Interrupted(answer)
    return Finished(answer)
