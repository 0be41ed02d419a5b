"""The chat page while the model server is switched or loads (``webapp.chat.switching``):
it says what is happening, and a message sent meanwhile is kept (saved, on screen) and
sent once the server is healthy, unless the user cancels it (it then stays, with Retry).

The load comes from the store (the admin console's switch publishes it); the health is
read fresh while a message waits (the sidebar's cached status may be 5 s old).
"""

from __future__ import annotations

import streamlit as st

from webapp.chat.switching import switching_sentence
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


def switching_notice(store: ConversationStore, load: LoadInProgress | None) -> None:
    """The sentence, kept up to date while a load is under way (none: nothing is drawn
    and nothing polls)."""
    if load is not None:
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
    """A message just sent while a load is under way and the server is not healthy: keep
    it instead of answering now (it would fail: nothing serves the chat meanwhile). True
    when it is kept."""
    if ss.generate and load is not None and client.status().state is not BackendState.HEALTHY:
        ss.generate = False
        ss.held = True
        return True
    return False


def release_when_ready(client: ChatClient) -> None:
    """Send the waiting message once the model server is healthy: on a fresh run, so that
    the sidebar reads the model now served and the answer uses it."""
    if ss.get("held") and client.status().state is BackendState.HEALTHY:
        ss.held = False
        ss.generate = True
        forget_server_facts()
        st.rerun()


def _cancel() -> None:
    ss.held = False


@st.fragment(run_every=POLL_S)
def waiting(client: ChatClient, store: ConversationStore) -> None:
    """What the waiting message waits for, with Cancel; reruns the page once it can go."""
    if not ss.get("held"):
        return
    if client.status().state is BackendState.HEALTHY:
        st.rerun(scope="app")  # ``release_when_ready`` sends it
    load = load_in_progress(store)
    said = switching_sentence(load) if load is not None else "The model server is not ready yet"
    st.info(
        literal(f"{said}. Your message will be sent when the model is ready."),
        icon=":material/schedule_send:",
    )
    st.button("Don't send it", icon=":material/cancel:", key="cancel_held", on_click=_cancel)
