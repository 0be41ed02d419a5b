"""The chat page while the model server is switched or loads (``webapp.chat.switching``),
or while a sleeping model's pool is woken (``webapp.chat.fleet``): it says what is
happening, and a message sent meanwhile is kept (saved, on screen) and sent once the server
(or the woken model) is ready, unless the user cancels it (it then stays, with Retry).

The load comes from the store (the admin console's switch publishes it); the health is
read fresh while a message waits (the sidebar's cached status may be 30 s old).
"""

from __future__ import annotations

import time

import streamlit as st
from streamlit.delta_generator import DeltaGenerator

from webapp.chat.errors import FleetUnavailable
from webapp.chat.fleet import CachedFleet
from webapp.chat.switching import switching_sentence, waking_sentence
from webapp.chat.ui.resources import forget_server_facts
from webapp.llm.chat import ChatClient
from webapp.llm.server import BackendState
from webapp.store import ConversationStore, StoreError
from webapp.store.loads import LoadInProgress, current_load
from webapp.ui.text import literal

ss = st.session_state

#: how often a waiting message checks whether the model server is ready
POLL_S = 2.0


def load_in_progress(store: ConversationStore) -> LoadInProgress | None:
    """The switch under way, if any; None when the store cannot tell (nothing to say)."""
    try:
        return current_load(store)
    except StoreError:
        return None


def notice_place(load: LoadInProgress | None) -> DeltaGenerator | None:
    """Where the switching sentence goes (the top of the page) while a load is under way;
    filled by ``switching_notice`` once this run has decided whether a message is kept
    (the kept message says the sentence then, once). None: no load, nothing drawn."""
    return st.empty() if load is not None else None


def switching_notice(store: ConversationStore, place: DeltaGenerator | None) -> None:
    """The sentence in ``place``, kept up to date while the load is under way (none:
    nothing is drawn and nothing polls); not said while a message is kept."""
    if place is not None:
        with place.container():
            _live_notice(store)


@st.fragment(run_every=POLL_S)
def _live_notice(store: ConversationStore) -> None:
    if ss.get("held"):
        return  # the waiting message says it
    load = load_in_progress(store)
    if load is None:  # the switch ended: redraw the page (the sidebar's server state too)
        forget_server_facts()
        st.rerun(scope="app")
    st.info(literal(switching_sentence(load)), icon=":material/hourglass_top:")


def hold_while_switching(client: ChatClient, load: LoadInProgress | None) -> bool:
    """A message about to be answered while a load is under way and the server is not
    healthy: keep it instead of answering now (it would fail: nothing serves the chat
    meanwhile). True when it is kept."""
    if ss.generate and load is not None and client.status().state is not BackendState.HEALTHY:
        _hold(None)
        return True
    return False


def hold_while_asleep(fleet: CachedFleet | None, client: ChatClient, model: str | None) -> bool:
    """A message about to be answered by a model whose pool sleeps at 0 replicas (or is
    starting): keep it, wake the pool (once per process, whoever asks) and send it when the
    model answers. A refused wake keeps the message too, with Retry and a plain reason.
    True when it is not answered now."""
    if not ss.generate or fleet is None or not model:
        return False
    ss.pop("wake_problem", None)
    condition = fleet.state(model)
    if condition == "serving" or (condition == "unknown" and not _silent(fleet, client, model)):
        return False
    if condition != "loading":
        try:
            fleet.wake(model)
        except FleetUnavailable as e:
            ss.generate = False
            said = "is asleep" if condition == "asleep" else "is not answering"
            ss.wake_problem = (
                f"{model} {said} and could not be woken: {e.reason}. Your message is "
                "kept: press Retry later, or ask an administrator to scale the model up."
            )
            return True
    _hold(model)
    if condition == "asleep":
        st.rerun()  # the sidebar, drawn before the wake, said "asleep": draw it anew
    return True


def _silent(fleet: CachedFleet, client: ChatClient, model: str) -> bool:
    """The pools' replicas cannot be read (the chat's Role may read the route and wake, not
    list pools): a routed model that does not answer now is woken too — waking leaves a
    pool that has replicas alone."""
    return model in (fleet.models() or ()) and not client.answers(model)


def _hold(model: str | None) -> None:
    ss.generate = False
    ss.held = True
    ss.held_model, ss.held_since = model, time.time()


def _ready(client: ChatClient, fleet: CachedFleet | None) -> bool:
    """What a kept message waits for: its woken model answering through the gateway (the
    pool's replica ready and routed to; not asked while the cluster says it still loads),
    else a healthy server."""
    model = ss.get("held_model")
    if model:
        if fleet is not None and fleet.state(model) in ("asleep", "loading"):
            return False
        return client.answers(model)
    return client.status().state is BackendState.HEALTHY


def release_when_ready(client: ChatClient, fleet: CachedFleet | None = None) -> None:
    """Send the waiting message once the model server (or the woken model) is ready: on a
    fresh run, so that the sidebar reads the model now served and the answer uses it."""
    if ss.get("held") and _ready(client, fleet):
        ss.held = False
        ss.held_model = None
        ss.generate = True
        forget_server_facts()
        st.rerun()


def _cancel() -> None:
    ss.held = False
    ss.held_model = None


def _waiting_for(store: ConversationStore, fleet: CachedFleet | None) -> str:
    load = load_in_progress(store)
    model = ss.get("held_model")
    if model and fleet is not None:
        since = time.time() - ss.get("held_since", time.time())
        return waking_sentence(model, fleet.state(model), load, since)
    return switching_sentence(load) if load is not None else "The model server is not ready yet"


@st.fragment(run_every=POLL_S)
def waiting(client: ChatClient, store: ConversationStore, fleet: CachedFleet | None = None) -> None:
    """What the waiting message waits for, with Cancel; reruns the page once it can go."""
    if not ss.get("held"):
        return
    if _ready(client, fleet):
        st.rerun(scope="app")  # ``release_when_ready`` sends it
    st.info(
        literal(
            f"{_waiting_for(store, fleet)}. Your message will be sent when the model is ready."
        ),
        icon=":material/schedule_send:",
    )
    st.button("Don't send it", icon=":material/cancel:", key="cancel_held", on_click=_cancel)
