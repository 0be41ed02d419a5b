"""Chat page: who is chatting, then the sidebar, the conversation and the answer being
generated, each drawn by its part of ``webapp.chat.ui``; the work is in ``webapp.chat``."""

from __future__ import annotations

import streamlit as st

from webapp.access.ui.chat_gate import current_owner, require_chat_access
from webapp.chat.history import History
from webapp.chat.limits import UsageLimits
from webapp.chat.options import GenerationOptions
from webapp.chat.ui.answer import (
    actions,
    await_previous_answer,
    begin_answer,
    drop,
    generate,
    render_message,
    settled,
)
from webapp.chat.ui.conversation import (
    apply_redo,
    conversation_tools,
    heading,
    init_state,
    remember_settings,
    save_question,
    show_refusal,
    submit,
    sync_with_url,
)
from webapp.chat.ui.resources import chat_client, chat_fleet, conversation_store
from webapp.chat.ui.sidebar import model_choice, sidebar
from webapp.chat.ui.switching import (
    hold_while_asleep,
    hold_while_switching,
    load_in_progress,
    notice_place,
    release_when_ready,
    switching_notice,
    waiting,
)
from webapp.settings import get_settings
from webapp.store.expiry import start_expiry
from webapp.ui.text import literal

settings = get_settings()
ss = st.session_state
await_previous_answer()  # a click mid-answer: that answer ends (Stopped) before this run goes on
client = chat_client(settings)
fleet = chat_fleet(settings)  # the model pools (FLEET_DISCOVERY), else None
store = conversation_store(settings)
start_expiry(store, settings.anonymous_conversation_ttl_days)  # once per process
owner = current_owner(settings, ss.get("browser_key"))
ss.browser_key = owner.browser_key
require_chat_access(settings, owner)  # CHAT_REQUIRE_LOGIN: guests see "Log in to chat"
history = History(store, UsageLimits.from_settings(store, settings), owner)

init_state(settings)
sync_with_url(settings, history)
apply_redo()
choice = model_choice(settings, client, fleet)
options = GenerationOptions.from_values(ss, choice.model, choice.max_len)  # this run's
load = load_in_progress(store)  # a model switch under way, said in plain words below

# A message is taken and its request sent before the page is drawn: the model works on it
# while the sidebar and the conversation are drawn, not after (``first-token overhead``).
prompt = ss.get("prompt")  # the chat input's value this run (``st.chat_input`` below)
refusal = None if prompt is None else submit(history, prompt, options)
try:
    # a message (or a Retry) kept while the model loads or its pool is woken: sent once ready
    # (a statement, not a bare `a or b` expression: Streamlit's magic would draw its value)
    if not hold_while_switching(client, load):
        hold_while_asleep(fleet, client, options.model)
    release_when_ready(client, fleet)
    # the request is sent, then the new message saved while the model works on it
    pending = begin_answer(settings, history, client, options) if ss.generate else None
finally:
    save_question(history)  # a message kept, or one whose answer did not begin: saved now


def draw_page() -> None:
    """Everything above the answer being generated."""
    sidebar(settings, history, owner, choice, fleet)
    conversation_tools(history)
    heading(settings)
    top = notice_place(load)  # filled below, once this run knows whether a message is kept
    if settings.llm_notice:
        st.warning(settings.llm_notice, icon=":material/science:")
    if not ss.messages:
        st.caption("Ask anything. Answers stream in; press Stop to cut one short.")
    for m in settled(ss.messages, pending):
        render_message(m)
    st.chat_input("Message the model", submit_mode="disable", key="prompt")
    show_refusal(refusal)
    switching_notice(store, top)  # said once: at the top, or next to a kept message (`waiting`)


try:
    draw_page()
except BaseException as stopped:  # Stop, another click, browser gone: end the answer begun
    if pending is not None:
        drop(history, pending, stopped)
    raise
if pending is not None:
    remember_settings(history, options)
    generate(history, pending)  # a new conversation's title, tools and place in the list
    # are drawn already: its first message was taken before the page was drawn
if history.pruned:
    st.info(
        f"You keep at most {settings.max_conversations_per_user} conversations: "
        f"the {history.pruned} oldest were deleted to make room.",
        icon=":material/info:",
    )
if ss.get("limit_notice"):
    st.warning(ss.limit_notice, icon=":material/hourglass_top:")
waiting(client, store, fleet)  # a message kept while the model loads: Cancel, sent when ready
if ss.get("wake_problem"):  # a sleeping model that could not be woken: the message is kept
    st.warning(literal(ss.wake_problem), icon=":material/bedtime:")
if not ss.get("held"):
    actions()
if history.problem:
    st.warning(f"Not saved: {history.problem}", icon=":material/cloud_off:")
