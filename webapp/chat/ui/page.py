"""Chat page: widgets, session state, one call into webapp.llm, render."""

from __future__ import annotations

import dataclasses
import itertools
import sys
import time

import streamlit as st
from streamlit.runtime import Runtime
from streamlit.runtime.scriptrunner_utils.exceptions import StopException
from streamlit.runtime.scriptrunner_utils.script_run_context import get_script_run_ctx

from webapp.access.ui.chat_gate import current_owner, require_chat_access
from webapp.access.ui.identify import oidc_configured
from webapp.chat import export
from webapp.chat.history import History, message_dicts
from webapp.chat.limits import UsageLimits
from webapp.chat.messages import answer_note, display_title, llm_error_message, stats_line
from webapp.llm.chat import ChatClient, ChatRequest, GenerationParams
from webapp.llm.errors import BackendUnreachable, EmptyPrompt, LLMError, ModelNotFound
from webapp.llm.prompts import Turn
from webapp.llm.server import BackendState, BackendStatus, ModelInfo
from webapp.settings import get_settings
from webapp.store import (
    DEFAULT_TITLE,
    ConversationNotFound,
    ConversationStore,
    LimitExceeded,
    PoolOptions,
    StoreError,
    title_from_prompt,
)
from webapp.store.expiry import start_expiry
from webapp.ui.safe_markdown import safe_markdown
from webapp.ui.text import literal

settings = get_settings()
ss = st.session_state

#: how often the streamed answer is redrawn; redrawing on every token costs
#: O(n^2) bytes over the websocket for long answers
REDRAW_EVERY_S = 0.1
#: time for the websocket to send the final answer before a rerun clears its queue
FLUSH_BEFORE_RERUN_S = 0.1


@st.cache_resource(show_spinner=False)
def _client(url: str, api_key: str, mode: str, timeout_s: float, deadline_s: float) -> ChatClient:
    return ChatClient(url, api_key, mode, timeout_s, deadline_s)  # type: ignore[arg-type]


client = _client(
    settings.llm_url,
    settings.llm_api_key.get_secret_value(),
    settings.llm_mode,
    settings.llm_timeout_s,
    settings.llm_answer_deadline_s,
)


@st.cache_resource(show_spinner=False)
def _store(database_url: str, pool: PoolOptions) -> ConversationStore:
    return ConversationStore(database_url, pool=pool)  # no I/O until first use


def _account() -> None:
    """Log in / out (only when OIDC login is configured); guests keep working without it."""
    if not oidc_configured():
        return
    if owner.anonymous:
        st.caption("Log in to keep your conversations on every device.")
        st.button("Log in", icon=":material/login:", key="login", on_click=st.login)
    else:
        st.caption(f"Signed in as **{literal(owner.label)}**")  # a name from the IdP
        st.button("Log out", icon=":material/logout:", key="logout", on_click=st.logout)


store = _store(
    settings.database_url,
    PoolOptions(
        settings.database_pool_size,
        settings.database_max_overflow,
        settings.database_pool_timeout_s,
        settings.database_connect_timeout_s,
    ),
)
start_expiry(store, settings.anonymous_conversation_ttl_days)  # once per process
owner = current_owner(settings, ss.get("browser_key"))
ss.browser_key = owner.browser_key
require_chat_access(settings, owner)  # CHAT_REQUIRE_LOGIN: guests see "Log in to chat"
history = History(store, UsageLimits.from_settings(store, settings), owner)


@st.cache_data(ttl=5, show_spinner=False)
def _status(url: str) -> BackendStatus:
    return client.status()


@st.cache_data(ttl=10, show_spinner=False)
def _models(url: str) -> list[ModelInfo]:
    return client.models()


def _init_state() -> None:
    ss.setdefault("messages", [])
    ss.setdefault("conv_id", None)
    ss.setdefault("conv_title", None)
    ss.setdefault("conv_is_owner", True)
    ss.setdefault("opened_ids", [])
    ss.setdefault("generate", False)
    ss.setdefault("system_prompt", settings.default_system_prompt)
    ss.setdefault("temperature", settings.default_temperature)
    ss.setdefault("top_p", settings.default_top_p)
    ss.setdefault("max_tokens", settings.default_max_tokens)


def _new_chat() -> None:
    ss.pop("limit_notice", None)
    ss.messages = []
    ss.conv_id = None
    ss.conv_title = None
    ss.conv_is_owner = True
    ss.generate = False
    ss.pop("confirm_delete", None)
    st.query_params.pop("chat", None)


def _open_chat(conv_id: str) -> None:
    """Switch to a conversation (from the sidebar): the URL drives what is loaded."""
    st.query_params["chat"] = conv_id


def _sync_with_url() -> None:
    """Load the conversation named by ``?chat=`` when it is not the one on screen."""
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
    ss.generate = False
    ss.pop("limit_notice", None)
    if conv.id not in ss.opened_ids:
        ss.opened_ids.append(conv.id)


def _redo_last() -> None:
    """Regenerate / Retry (callback): the work happens in the script body."""
    _status.clear()  # the server may have come back: don't trust the cached status
    _models.clear()
    ss.redo = True


def _apply_redo() -> None:
    """Drop the last answer (if any) and ask again."""
    if not ss.pop("redo", False):
        return
    if ss.messages and ss.messages[-1]["role"] == "assistant":
        ss.messages.pop()
    if ss.messages and ss.messages[-1]["role"] == "user":
        history.truncate_after(ss.conv_id, ss.messages[-1].get("id"))
        ss.generate = True


# ---------------------------------------------------------------- sidebar
_STATE_LABEL = {
    BackendState.HEALTHY: (":green[:material/check_circle:]", "Model server healthy"),
    BackendState.LOADING: (":orange[:material/hourglass_top:]", "Model server loading"),
    BackendState.UNREACHABLE: (":red[:material/error:]", "Model server unreachable"),
}


def _sidebar() -> tuple[str | None, int | None]:
    """Render the sidebar; return the chosen model and its context length."""
    with st.sidebar:
        st.button(
            "New chat",
            icon=":material/add:",
            on_click=_new_chat,
            use_container_width=True,
            key="new_chat",
        )
        status = _status(settings.llm_url)
        icon, label = _STATE_LABEL[status.state]
        st.markdown(f"{icon} **{label}**")
        if status.detail:
            st.caption(status.detail)
        models: list[ModelInfo] = []
        if status.state is BackendState.HEALTHY:
            try:
                models = _models(settings.llm_url)
            except LLMError as e:
                st.caption(safe_markdown(f"Could not list models: {llm_error_message(e)}"))
        model, max_len = _pick_model(models)
        with st.expander("Settings", expanded=False):
            st.text_area(
                "System prompt", key="system_prompt", height=100,
                max_chars=settings.max_prompt_chars,
            )  # fmt: skip
            st.slider("Temperature", 0.0, 2.0, step=0.05, key="temperature")
            st.slider("Top p", 0.05, 1.0, step=0.05, key="top_p")
            upper = max(16, min(8192, (max_len or 8192) - 16))
            ss.max_tokens = min(ss.max_tokens, upper)
            st.number_input("Max answer tokens", 1, upper, step=64, key="max_tokens")
        _conversation_list()
        _account()
        return model, max_len


def _conversation_list() -> None:
    convs = history.conversations(include_ids=ss.opened_ids)
    if not convs:
        return
    box = st.sidebar.container()
    box.caption("Conversations")
    for c in convs:
        box.button(
            display_title(c.title),
            key=f"conv_{c.id}",
            on_click=_open_chat,
            args=(c.id,),
            use_container_width=True,
            type="secondary" if c.id == ss.conv_id else "tertiary",
        )


def _export(kind: str, conv_id: str):
    """Build an export when the button is clicked (not on every rerun)."""

    def build() -> str:
        conv = history.open(conv_id)
        return export.to_markdown(conv) if kind == "md" else export.to_json(conv)

    return build


def _conversation_tools() -> None:
    """Rename, delete (asks first) and export the conversation on screen."""
    if ss.conv_id is None or not ss.messages:
        return
    conv_id, title = ss.conv_id, ss.conv_title or DEFAULT_TITLE
    with st.sidebar.expander("This conversation", icon=":material/chat:"):
        st.caption("Export")
        c1, c2 = st.columns([3, 2])
        c1.download_button(
            "Markdown", _export("md", conv_id), export.filename_for_title(title, "md"),
            mime="text/markdown", icon=":material/download:", key="export_md",
            on_click="ignore", width="stretch",
        )  # fmt: skip
        c2.download_button(
            "JSON", _export("json", conv_id), export.filename_for_title(title, "json"),
            mime="application/json", key="export_json", on_click="ignore", width="stretch",
        )  # fmt: skip
        if not ss.conv_is_owner:
            st.caption("Shared with you by link: only its owner can rename or delete it.")
            return
        new_title = st.text_input("Title", value=title, key=f"title_{conv_id}", max_chars=120)
        if new_title != title:
            try:
                ss.conv_title = history.rename(conv_id, new_title)
            except StoreError as e:
                st.caption(str(e))
                return
            st.rerun()
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
            _new_chat()
            st.rerun()
        if d2.button("Cancel", key="delete_no"):
            ss.pop("confirm_delete", None)
            st.rerun()


def _pick_model(models: list[ModelInfo]) -> tuple[str | None, int | None]:
    by_id = {m.id: m for m in models}
    if settings.llm_name:
        name = settings.llm_name
        if models and name not in by_id:
            st.warning(f"The configured model {name!r} is not served right now.")
    elif len(models) > 1:
        name = st.selectbox("Model", list(by_id), key="model")
    elif models:
        name = models[0].id
    else:
        name = None
    if name:
        info = by_id.get(name)
        limit = f" · context {info.max_model_len:,} tokens" if info and info.max_model_len else ""
        st.caption(f"Model: **{literal(name)}**{limit}")
    return name, (by_id[name].max_model_len if name in by_id else None)


# ---------------------------------------------------------------- history
def _render_message(m: dict) -> None:
    with st.chat_message(m["role"]):
        if m.get("reasoning"):
            _render_thinking(m["reasoning"])
        if m["content"]:
            st.markdown(safe_markdown(m["content"]))
        _render_notes(m)


def _render_thinking(text: str) -> None:
    with st.expander("Thinking", icon=":material/psychology:"):
        st.markdown(safe_markdown(text))


def _render_notes(m: dict) -> None:
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


def _actions() -> None:
    if not ss.messages or ss.generate:
        return
    last = ss.messages[-1]
    failed = last["role"] == "user" or last.get("status") in ("failed", "interrupted", "streaming")
    label, icon = ("Retry", ":material/replay:") if failed else ("Regenerate", ":material/refresh:")
    st.button(label, icon=icon, on_click=_redo_last, key="redo")


# ---------------------------------------------------------------- generation
def _submit(prompt: str) -> None:
    ss.pop("limit_notice", None)
    try:
        if not prompt.strip():
            raise EmptyPrompt()
        history.admit_message(prompt, ss.system_prompt)
    except (LLMError, LimitExceeded) as e:
        text = llm_error_message(e) if isinstance(e, LLMError) else str(e)
        st.warning(text, icon=":material/block:")
        if prompt.strip():
            with st.expander("Your message (copy it from here)"):
                st.code(prompt, language=None)
        return
    if ss.conv_id is None:
        ss.conv_title = title_from_prompt(prompt)
        ss.conv_is_owner = True
        ss.conv_id = history.start({"system_prompt": ss.system_prompt})
        if ss.conv_id:
            ss.opened_ids.append(ss.conv_id)
            st.query_params["chat"] = ss.conv_id
    msg = {"role": "user", "content": prompt, "status": "complete"}
    msg["id"] = history.add(ss.conv_id, "user", prompt)
    ss.messages.append(msg)
    ss.generate = True


def _turns() -> tuple[Turn, ...]:
    return tuple(
        Turn(m["role"], m["content"])
        for m in ss.messages
        if m["role"] in ("user", "assistant") and m["content"].strip()
    )


def _save_end(msg: dict, gen, exc: BaseException | None) -> None:
    """Mark and save how an answer ended. Reached with status "streaming" only when the user
    pressed Stop or the browser is gone (the app shutting down on a rollout or drained node,
    the tab closed or reloaded): keep the partial answer and mark it for what happened."""
    ended = None
    if msg["status"] == "streaming":
        if isinstance(exc, StopException) and _browser_gone():
            msg["status"], ended = "interrupted", "app"
        else:
            msg["status"] = "stopped"
    if gen is not None:
        msg["content"] = msg["content"] or gen.text
        gen.close()
        msg["meta"] = gen.stats.as_dict()
        if gen.reasoning:
            msg["reasoning"] = msg["meta"]["reasoning"] = gen.reasoning
    if ended:
        msg["meta"]["ended"] = ended
    meta = {**msg["meta"], "error": msg.get("error")}
    if msg["id"] is None:
        msg["id"] = history.add(ss.conv_id, "assistant", msg["content"], msg["status"], meta)
    else:
        history.finish_answer(msg["id"], content=msg["content"], status=msg["status"], meta=meta)


def _generate(model: str | None, max_len: int | None) -> None:
    ss.generate = False
    ss.pop("limit_notice", None)
    try:
        history.limits.check_system_prompt(ss.system_prompt)  # Regenerate skips _submit
        lease = history.acquire()
    except LimitExceeded as e:
        # kept until the user acts: the page may rerun before it is seen (new conversation);
        # the question stays on screen with Retry under it
        ss.limit_notice = str(e)
        return
    msg = {"role": "assistant", "content": "", "status": "streaming", "meta": {}, "id": None}
    ss.messages.append(msg)
    gen = None
    bubble = st.chat_message("assistant")
    with bubble:
        thinking = st.empty()
        box = st.empty()
        box.markdown("…")
        # clicking Stop reruns the script, which interrupts the loop below at its next
        # redraw; the finally-block keeps the partial answer (and closes the stream)
        stop = st.empty()
        stop.button("Stop", icon=":material/stop_circle:", key="stop")
    try:
        if model is None:
            raise BackendUnreachable("no model is served")
        request = ChatRequest(
            model=model,
            system=ss.system_prompt,
            turns=_turns(),
            params=GenerationParams(ss.temperature, ss.top_p, int(ss.max_tokens)),
            max_model_len=max_len,
        )
        gen = client.stream(request)
        try:
            first = next(iter(gen), None)
        except ModelNotFound:
            # the admin switched the served model since the list was cached: follow it
            request = _switched_model(request)
            gen = client.stream(request)
            first = next(iter(gen), None)
        last_draw = 0.0
        for _delta in itertools.chain([] if first is None else [first], gen):
            msg["content"] = gen.text
            now = time.monotonic()
            if now - last_draw >= REDRAW_EVERY_S:
                if gen.reasoning and not gen.text:
                    thinking.caption(safe_markdown(_tail(gen.reasoning)))
                box.markdown(safe_markdown(gen.text + " ▌"))
                last_draw = now
            # saved after drawing, so the database never delays what the user sees
            if msg["id"] is None:
                msg["id"] = history.begin_answer(ss.conv_id, gen.text)
            else:
                history.checkpoint(msg["id"], gen.text)
        box.markdown(safe_markdown(gen.text))  # the whole answer, before any bookkeeping
        msg["status"] = "cut" if gen.stats.finish_reason == "length" else "complete"
    except LLMError as e:
        _fail(msg, e)
    finally:
        try:
            _save_end(msg, gen, sys.exception())
        finally:
            history.release(lease)  # whatever happened while saving: the slot is freed
    # Finish the answer in place rather than rerunning the page: a rerun would drop
    # deltas not yet flushed to the browser and redraw everything.
    stop.empty()
    if msg.get("reasoning"):
        with thinking.container():
            _render_thinking(msg["reasoning"])
    else:
        thinking.empty()
    if msg["content"]:
        box.markdown(safe_markdown(msg["content"]))
    else:
        box.empty()
    with bubble:
        _render_notes(msg)


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


def _switched_model(request: ChatRequest) -> ChatRequest:
    """The same request for the model now served, or raise ModelNotFound again."""
    _models.clear()
    fresh = [] if settings.llm_name else client.models()
    if not fresh or fresh[0].id == request.model:
        raise ModelNotFound(404, f"{request.model} is not served")
    return dataclasses.replace(request, model=fresh[0].id, max_model_len=fresh[0].max_model_len)


def _tail(text: str, chars: int = 300) -> str:
    """The end of the model's thinking, shown live while it reasons."""
    return "Thinking… " + ("…" + text[-chars:] if len(text) > chars else text)


def _fail(msg: dict, err: LLMError) -> None:
    msg["content"] = err.partial_text or msg["content"]
    msg["status"] = "interrupted" if msg["content"] else "failed"
    msg["error"] = llm_error_message(err)


# ---------------------------------------------------------------- page
def _heading() -> None:
    """The app's name on an empty chat; a conversation's title as a smaller heading in plain
    text (a title comes from a prompt or the user: it is never formatted as markdown)."""
    if ss.conv_id and ss.conv_title:
        st.subheader(display_title(ss.conv_title), anchor=False)
    else:
        st.title(settings.app_title)


_init_state()
_sync_with_url()
_apply_redo()
model, max_len = _sidebar()
_conversation_tools()
_heading()
if settings.llm_notice:
    st.warning(settings.llm_notice, icon=":material/science:")
notice = st.empty()  # the empty-chat hint, cleared when the first message is sent
if not ss.messages:
    notice.caption("Ask anything. Answers stream in; press Stop to cut one short.")
for m in ss.messages:
    _render_message(m)
prompt = st.chat_input("Message the model", submit_mode="disable", key="prompt")
new_conversation = False
if prompt is not None:
    new_conversation = ss.conv_id is None
    _submit(prompt)
    if ss.generate:
        notice.empty()
        _render_message(ss.messages[-1])
if ss.generate:
    _generate(model, max_len)
    if new_conversation and ss.conv_id:
        # the title, the sidebar list and the conversation tools were drawn before the
        # conversation existed: redraw the page once. A rerun drops deltas not yet sent
        # to the browser, so let the last one go out first.
        time.sleep(FLUSH_BEFORE_RERUN_S)
        st.rerun()
if history.pruned:
    st.info(
        f"You keep at most {settings.max_conversations_per_user} conversations: "
        f"the {history.pruned} oldest were deleted to make room.",
        icon=":material/info:",
    )
if ss.get("limit_notice"):
    st.warning(ss.limit_notice, icon=":material/hourglass_top:")
_actions()
if history.problem:
    st.warning(f"Not saved: {history.problem}", icon=":material/cloud_off:")
