"""Drawing the conversation's messages and the answer being generated: the page's side of
a turn (``webapp.chat.turn.run_turn`` does the work; this only draws its events)."""

from __future__ import annotations

import itertools
import threading
import time
from dataclasses import dataclass, field

import streamlit as st
from streamlit.runtime import Runtime
from streamlit.runtime.scriptrunner_utils.exceptions import StopException
from streamlit.runtime.scriptrunner_utils.script_run_context import get_script_run_ctx

from webapp.chat.history import History
from webapp.chat.messages import answer_note, busy_message, stats_line
from webapp.chat.options import GenerationOptions
from webapp.chat.turn import (
    BusyWatch,
    Delta,
    Event,
    Failed,
    Finished,
    Interrupted,
    ModelSwitched,
    Reasoning,
    Refused,
    Started,
    Stopped,
    TurnEvents,
    Waiting,
    cancel,
    run_turn,
)
from webapp.chat.ui.conversation import redo_last, save_question
from webapp.chat.ui.resources import forget_served_models
from webapp.llm.chat import ChatClient
from webapp.llm.errors import ModelNotFound
from webapp.settings import Settings
from webapp.ui.safe_markdown import safe_markdown

ss = st.session_state

#: how often the streamed answer is redrawn; redrawing on every token costs
#: O(n^2) bytes over the websocket for long answers
REDRAW_EVERY_S = 0.1

#: how long a page run waits for the answer of the run it interrupted to end (its next token
#: or busy reading: vLLM's queue is read every CHAT_BUSY_POLL_S, 2 s by default)
PREVIOUS_ANSWER_WAIT_S = 3.0


def render_message(m: dict) -> None:
    with st.chat_message(m["role"]):
        if m.get("reasoning"):
            render_thinking(m["reasoning"])
        if m["content"]:
            st.markdown(safe_markdown(m["content"]))
        render_notes(m)


def render_thinking(text: str) -> None:
    with st.expander("Thinking", icon=":material/psychology:"):
        st.markdown(safe_markdown(text))


def render_notes(m: dict) -> None:
    """What follows an answer: why it is incomplete, the error, the stats."""
    note = answer_note(m.get("status", "complete"), ended=(m.get("meta") or {}).get("ended"))
    if note:
        st.caption(note)
    if m.get("error"):
        st.error(safe_markdown(m["error"]), icon=":material/warning:")
    meta = m.get("meta") or {}
    if m["role"] == "assistant" and meta.get("completion_tokens"):
        st.caption(stats_line(meta))
    if meta.get("dropped_turns"):
        st.caption(
            f":material/info: {meta['dropped_turns']} older message(s) were not sent to the "
            "model: they no longer fit its context window."
        )


def actions() -> None:
    if not ss.messages or ss.generate:
        return
    last = ss.messages[-1]
    failed = last["role"] == "user" or last.get("status") in ("failed", "interrupted", "streaming")
    label, icon = ("Retry", ":material/replay:") if failed else ("Regenerate", ":material/refresh:")
    st.button(label, icon=icon, on_click=redo_last, key="redo")


@dataclass
class PendingAnswer:
    """An answer begun before the page is drawn (``begin_answer``): its turn, the turn's
    first event (``Refused``, or ``Started`` with the request sent) and, for Retry or
    Regenerate, the answer it replaces."""

    turn: TurnEvents
    first: Event
    replaced: dict | None
    ended: threading.Event = field(default_factory=threading.Event)  # set by generate/drop


def await_previous_answer(timeout_s: float = PREVIOUS_ANSWER_WAIT_S) -> None:
    """Let the answer of the run this one interrupted end first. A click while an answer
    streams (Stop, another conversation) starts a new run at once on a new thread, and the
    old run only learns it is stopped at its next token; until then its answer is still
    "streaming" in the session. Waiting here (at most ``timeout_s``) lets this run draw it
    as it was saved (Stopped) and keeps the old run's last changes to the session from
    landing in the middle of this one."""
    ended = ss.get("answer_ended")
    if ended is not None:
        ended.wait(timeout_s)


def settled(messages: list[dict], pending: PendingAnswer | None) -> list[dict]:
    """The messages the page draws as they are: all but the answer ``pending`` begun
    (``generate`` draws that one as it streams)."""
    if pending is not None and isinstance(pending.first, Started):
        return [m for m in messages if m is not pending.first.answer]
    return messages


def begin_answer(
    settings: Settings, history: History, client: ChatClient, options: GenerationOptions
) -> PendingAnswer:
    """Take the answer slot and send the request for the last question, then save the
    question if it is new (``save_question``), drawing nothing: the page is drawn while the
    model works on it; ``generate`` then draws the answer."""
    ss.generate = False
    ss.pop("limit_notice", None)
    busy = BusyWatch(settings.chat_busy_after_s, settings.chat_busy_poll_s)
    replaced = ss.pop("replaced", None)  # Retry/Regenerate: the answer to replace
    turn = run_turn(history, client, options, ss.messages, ss.conv_id,
                    follow_switch=not settings.llm_name, busy=busy,
                    save_question=lambda: save_question(history))  # fmt: skip
    try:
        pending = PendingAnswer(turn, next(turn), replaced)
    except BaseException:
        if replaced:  # the turn broke before it began: the old answer stays
            ss.messages.extend(replaced["answers"])
        raise
    ss.answer_ended = pending.ended
    return pending


def generate(history: History, pending: PendingAnswer) -> None:
    """Draw the answer begun by ``begin_answer`` as it streams. Clicking Stop reruns the
    script, which interrupts the drawing at its next redraw; the turn is then cancelled,
    keeps the partial answer and closes the stream. ``drop`` it instead when the page
    broke off before it got here."""
    replaced = pending.replaced
    view: AnswerView | None = None
    try:
        replaced = _settle_replaced(history, pending)
        for event in itertools.chain([pending.first], pending.turn):
            view = _draw(event, view)
    except BaseException as exc:  # Stop, browser gone: whatever stopped the drawing
        _cancel(pending, exc)
        raise
    finally:
        if replaced:  # refused before it began: the old answer stays, saved and shown
            ss.messages.extend(replaced["answers"])
        pending.ended.set()
    for m in replaced["answers"] if replaced else ():
        render_message(m)


def drop(history: History, pending: PendingAnswer, exc: BaseException) -> None:
    """The page run ended (``exc``: Stop, another click, browser gone) before ``generate``
    drew the answer: end the turn as a Stop right after it began would (the empty answer
    saved, the slot freed, the request closed); a refused Retry keeps the old answer."""
    replaced = pending.replaced
    try:
        replaced = _settle_replaced(history, pending)
    finally:
        try:
            _cancel(pending, exc)
        finally:
            if replaced:
                ss.messages.extend(replaced["answers"])
            pending.ended.set()


def _settle_replaced(history: History, pending: PendingAnswer) -> dict | None:
    """Retry/Regenerate: once the new answer has its slot (``Started``, always the turn's
    first event) the answer it replaces is deleted; refused, that answer is returned, to be
    put back (None: nothing to put back)."""
    replaced = pending.replaced
    if replaced and isinstance(pending.first, Started):
        history.truncate_after(ss.conv_id, replaced["after"])
        return None
    return replaced


def _cancel(pending: PendingAnswer, exc: BaseException) -> None:
    cancel(pending.turn, browser_gone=isinstance(exc, StopException) and _browser_gone())


def _draw(event: Event, view: AnswerView | None) -> AnswerView | None:
    match event:
        case Refused(reason=reason):
            # kept until the user acts: the page may rerun before it is seen (new
            # conversation); the question stays on screen with Retry under it
            ss.limit_notice = reason
        case Started():
            return AnswerView()
        case ModelSwitched():
            forget_served_models()  # the sidebar lists the model now served
        case Waiting(ahead=ahead) if view:
            view.box.caption(busy_message(ahead))  # each reading redraws: Stop works meanwhile
        case Reasoning(text=text) if view:
            view.think(text)
        case Delta(text=text, final=True) if view:
            view.box.markdown(safe_markdown(text))  # the whole answer, before bookkeeping
        case Delta(text=text) if view:
            view.grow(text)
        case Finished(answer=a) | Stopped(answer=a) | Interrupted(answer=a) if view:
            view.end(a)
        case Failed(answer=answer, error=error) if view:
            if isinstance(error, ModelNotFound):
                forget_served_models()  # it was looked up again: list what is served
            view.end(answer)
    return view


class AnswerView:
    """The answer's bubble while it streams: the thinking, the text, the Stop button."""

    def __init__(self) -> None:
        self.bubble = st.chat_message("assistant")
        with self.bubble:
            self.thinking = st.empty()
            self.box = st.empty()
            self.box.markdown("…")
            # clicking Stop reruns the script, which interrupts the drawing at its next
            # redraw; the turn is then cancelled and keeps the partial answer
            self.stop = st.empty()
            self.stop.button("Stop", icon=":material/stop_circle:", key="stop")
        self.text = ""
        self.reasoning = ""
        self.last_draw = 0.0

    def think(self, reasoning: str) -> None:
        self.reasoning = reasoning
        self.grow(self.text)

    def grow(self, text: str) -> None:
        """Redraw at most every REDRAW_EVERY_S."""
        self.text = text
        now = time.monotonic()
        if now - self.last_draw >= REDRAW_EVERY_S:
            if self.reasoning and not text:
                self.thinking.caption(safe_markdown(_tail(self.reasoning)))
            self.box.markdown(safe_markdown(text + " ▌"))
            self.last_draw = now

    def end(self, answer: dict) -> None:
        """Finish the answer in place rather than rerunning the page: a rerun would drop
        deltas not yet flushed to the browser and redraw everything."""
        self.stop.empty()
        if answer.get("reasoning"):
            with self.thinking.container():
                render_thinking(answer["reasoning"])
        else:
            self.thinking.empty()
        if answer["content"]:
            self.box.markdown(safe_markdown(answer["content"]))
        else:
            self.box.empty()
        with self.bubble:
            render_notes(answer)


def _browser_gone() -> bool:
    """True when this session's browser is no longer connected (app shutting down, tab
    closed). A Stop click also ends a run with StopException at times, so the exception
    alone does not tell them apart."""
    ctx = get_script_run_ctx()
    return (
        ctx is not None
        and Runtime.exists()
        and not Runtime.instance().is_active_session(ctx.session_id)
    )


def _tail(text: str, chars: int = 300) -> str:
    """The end of the model's thinking, shown live while it reasons."""
    return "Thinking… " + ("…" + text[-chars:] if len(text) > chars else text)
