"""The conversation on screen: session state, the ``?chat=`` URL, a new question, redo,
and the conversation's tools (export, rename, delete). Its settings are saved with it and
put back in the sidebar when it is reopened."""

from __future__ import annotations

from dataclasses import dataclass

import streamlit as st

from webapp.chat import export
from webapp.chat.history import History, message_dicts
from webapp.chat.messages import display_title, llm_error_message
from webapp.chat.options import GenerationOptions, knobs, restorable
from webapp.chat.ui.resources import forget_server_facts
from webapp.llm.errors import EmptyPrompt, LLMError
from webapp.settings import Settings
from webapp.store import (
    DEFAULT_TITLE,
    ConversationNotFound,
    LimitExceeded,
    StoreError,
    title_from_prompt,
)

ss = st.session_state


def init_state(settings: Settings) -> None:
    ss.setdefault("messages", [])
    ss.setdefault("conv_id", None)
    ss.setdefault("conv_title", None)
    ss.setdefault("conv_is_owner", True)
    ss.setdefault("conv_settings", None)  # the settings saved with the open conversation
    ss.setdefault("opened_ids", [])
    ss.setdefault("generate", False)
    for knob in knobs(settings):
        ss.setdefault(knob.key, knob.default)


def new_chat() -> None:
    ss.pop("limit_notice", None)
    ss.pop("wake_problem", None)
    ss.messages = []
    ss.conv_id = None
    ss.conv_title = None
    ss.conv_is_owner = True
    ss.conv_settings = None
    ss.generate = False
    ss.pop("confirm_delete", None)
    st.query_params.pop("chat", None)


def open_chat(conv_id: str) -> None:
    """Switch to a conversation (from the sidebar): the URL drives what is loaded."""
    st.query_params["chat"] = conv_id


def sync_with_url(settings: Settings, history: History) -> None:
    """Load the conversation named by ``?chat=`` when it is not the one on screen, with the
    settings it was answered with (those still within today's bounds)."""
    wanted = st.query_params.get("chat")
    if not wanted or wanted == ss.conv_id:
        return
    try:
        conv = history.open(wanted, sweep=True)
    except ConversationNotFound as e:
        st.error(str(e), icon=":material/search_off:")
        st.query_params.pop("chat", None)
        return
    except StoreError as e:
        st.error(str(e), icon=":material/cloud_off:")
        return
    ss.messages = message_dicts(conv)
    ss.conv_id, ss.conv_title, ss.conv_is_owner = conv.id, conv.title, conv.is_owner
    ss.conv_settings = conv.chat_settings
    for key, value in restorable(conv.chat_settings, knobs(settings)).items():
        ss[key] = value
    ss.generate = False
    ss.pop("limit_notice", None)
    ss.pop("wake_problem", None)
    if conv.id not in ss.opened_ids:
        ss.opened_ids.append(conv.id)


def remember_settings(history: History, options: GenerationOptions) -> None:
    """Save the settings the next answer is made with, when they changed (owner only)."""
    saved = options.saved()
    if ss.conv_id is None or not ss.conv_is_owner or saved == ss.conv_settings:
        return
    history.save_settings(ss.conv_id, saved)
    ss.conv_settings = saved


def redo_last() -> None:
    """Regenerate / Retry (callback): the work happens in the script body."""
    forget_server_facts()  # the server may have come back: don't trust the cached status
    ss.redo = True


def apply_redo() -> None:
    """Ask the last question again. The last answer (if any) leaves the screen but stays
    saved in ``ss.replaced`` until the new answer gets its slot (``generate`` deletes it
    then): a refused Retry — the user's slot still held by a replica that died mid-answer,
    or the rate limit — must not lose the partial answer it was meant to replace."""
    if not ss.pop("redo", False):
        return
    keep = len(ss.messages)
    if keep and ss.messages[-1]["role"] == "assistant":
        keep -= 1
    if keep and ss.messages[keep - 1]["role"] == "user":
        ss.replaced = {"after": ss.messages[keep - 1].get("id"), "answers": ss.messages[keep:]}
        del ss.messages[keep:]
        ss.generate = True


@dataclass(frozen=True)
class Refusal:
    """A message not taken: why (plain words) and the message, to copy (None: empty)."""

    reason: str
    prompt: str | None


def submit(history: History, prompt: str, options: GenerationOptions) -> Refusal | None:
    """Take the user's message, to be saved by ``save_question`` (once its answer's request
    is sent, or at once when it is kept), or say why not (``show_refusal`` draws it where
    the message was typed). Draws nothing: it runs before the page is drawn."""
    ss.pop("limit_notice", None)
    try:
        if not prompt.strip():
            raise EmptyPrompt()
        history.admit_message(prompt, options.system_prompt)
    except (LLMError, LimitExceeded) as e:
        text = llm_error_message(e) if isinstance(e, LLMError) else str(e)
        return Refusal(text, prompt if prompt.strip() else None)
    msg = {"role": "user", "content": prompt, "status": "complete", "id": None}
    ss.messages.append(msg)
    ss.unsaved_question = (msg, options.saved())
    ss.generate = True
    return None


def save_question(history: History) -> str | None:
    """Save the message ``submit`` took, if not saved yet (its conversation is started for
    the first one); the open conversation's id (None: not saved, ``history.problem``)."""
    unsaved = ss.pop("unsaved_question", None)
    if unsaved is None:
        return ss.conv_id
    msg, chat_settings = unsaved
    started = ss.conv_id is None
    if started:
        ss.conv_title = title_from_prompt(msg["content"])
        ss.conv_is_owner = True
        ss.conv_settings = chat_settings
        ss.conv_id = history.start(chat_settings)
    msg["id"] = history.add(ss.conv_id, "user", msg["content"])
    if started and ss.conv_id:
        ss.opened_ids.append(ss.conv_id)
        st.query_params["chat"] = ss.conv_id  # last: it may end the run (a click meanwhile)
    return ss.conv_id


def show_refusal(refusal: Refusal | None) -> None:
    """Why the message was not taken, with the message to copy (nothing when it was)."""
    if refusal is None:
        return
    st.warning(refusal.reason, icon=":material/block:")
    if refusal.prompt:
        with st.expander("Your message (copy it from here)"):
            st.code(refusal.prompt, language=None)


def heading(settings: Settings) -> None:
    """The app's name on an empty chat; a conversation's title as a smaller heading in plain
    text (a title comes from a prompt or the user: it is never formatted as markdown)."""
    if ss.conv_id and ss.conv_title:
        st.subheader(display_title(ss.conv_title), anchor=False)
    else:
        st.title(settings.app_title)


def _export(history: History, kind: str, conv_id: str):
    """Build an export when the button is clicked (not on every rerun)."""

    def build() -> str:
        conv = history.open(conv_id)
        return export.to_markdown(conv) if kind == "md" else export.to_json(conv)

    return build


def conversation_tools(history: History) -> None:
    """Rename, delete (asks first) and export the conversation on screen."""
    if ss.conv_id is None or not ss.messages:
        return
    with st.sidebar:
        _tools(history)


@st.fragment
def _tools(history: History) -> None:
    """A fragment: a title typed (or Delete clicked) while an answer streams does not stop
    the answer, as a click elsewhere on the page would; it is applied when the answer ends
    (Streamlit runs a fragment's rerun after the page's run), then the page is redrawn."""
    conv_id, title = ss.conv_id, ss.conv_title or DEFAULT_TITLE
    with st.expander("This conversation", icon=":material/chat:"):
        st.caption("Export")
        c1, c2 = st.columns([3, 2])
        c1.download_button(
            "Markdown", _export(history, "md", conv_id), export.filename_for_title(title, "md"),
            mime="text/markdown", icon=":material/download:", key="export_md",
            on_click="ignore", width="stretch",
        )  # fmt: skip
        c2.download_button(
            "JSON", _export(history, "json", conv_id), export.filename_for_title(title, "json"),
            mime="application/json", key="export_json", on_click="ignore", width="stretch",
        )  # fmt: skip
        if not ss.conv_is_owner:
            st.caption("Shared with you by link: only its owner can rename or delete it.")
            return
        if _renamed(history, conv_id, title):
            _delete(history, conv_id)


def _renamed(history: History, conv_id: str, title: str) -> bool:
    """The title box; False when renaming failed (said in its place)."""
    new_title = st.text_input("Title", value=title, key=f"title_{conv_id}", max_chars=120)
    if new_title != title:
        try:
            ss.conv_title = history.rename(conv_id, new_title)
        except StoreError as e:
            st.caption(str(e))
            return False
        st.rerun()
    return True


def _delete(history: History, conv_id: str) -> None:
    if not ss.get("confirm_delete"):
        if st.button("Delete…", icon=":material/delete:", key="delete"):
            ss.confirm_delete = True
            st.rerun()
        return
    st.warning("Delete this conversation for good?")
    d1, d2 = st.columns(2)
    if d1.button("Delete", type="primary", key="delete_yes"):
        try:
            history.delete(conv_id)
        except StoreError as e:
            st.caption(str(e))
            return
        new_chat()
        st.rerun()
    if d2.button("Cancel", key="delete_no"):
        ss.pop("confirm_delete", None)
        st.rerun()
