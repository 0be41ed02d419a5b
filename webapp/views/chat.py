"""Chat page: widgets, session state, one call into webapp.llm, render."""

from __future__ import annotations

import time

import streamlit as st

from webapp.llm.chat import ChatClient, ChatRequest, GenerationParams
from webapp.llm.errors import BackendUnreachable, EmptyPrompt, LLMError, PromptTooLong
from webapp.llm.prompts import Turn
from webapp.llm.server import BackendState, BackendStatus, ModelInfo
from webapp.settings import get_settings
from webapp.views.messages import answer_note, llm_error_message, stats_line

settings = get_settings()
ss = st.session_state

#: how often the streamed answer is redrawn; redrawing on every token costs
#: O(n^2) bytes over the websocket for long answers
REDRAW_EVERY_S = 0.05


@st.cache_resource(show_spinner=False)
def _client(url: str, api_key: str, mode: str, timeout_s: float) -> ChatClient:
    return ChatClient(url, api_key, mode, timeout_s)  # type: ignore[arg-type]


client = _client(
    settings.llm_url,
    settings.llm_api_key.get_secret_value(),
    settings.llm_mode,
    settings.llm_timeout_s,
)


@st.cache_data(ttl=5, show_spinner=False)
def _status(url: str) -> BackendStatus:
    return client.status()


@st.cache_data(ttl=10, show_spinner=False)
def _models(url: str) -> list[ModelInfo]:
    return client.models()


def _init_state() -> None:
    ss.setdefault("messages", [])
    ss.setdefault("generate", False)
    ss.setdefault("system_prompt", settings.default_system_prompt)
    ss.setdefault("temperature", settings.default_temperature)
    ss.setdefault("top_p", settings.default_top_p)
    ss.setdefault("max_tokens", settings.default_max_tokens)


def _new_chat() -> None:
    ss.messages = []
    ss.generate = False


def _redo_last() -> None:
    """Regenerate / Retry: drop the last answer (if any) and ask again."""
    _status.clear()  # the server may have come back: don't trust the cached status
    _models.clear()
    if ss.messages and ss.messages[-1]["role"] == "assistant":
        ss.messages.pop()
    if ss.messages and ss.messages[-1]["role"] == "user":
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
                st.caption(f"Could not list models: {llm_error_message(e)}")
        model, max_len = _pick_model(models)
        with st.expander("Settings", expanded=False):
            st.text_area("System prompt", key="system_prompt", height=100)
            st.slider("Temperature", 0.0, 2.0, step=0.05, key="temperature")
            st.slider("Top p", 0.05, 1.0, step=0.05, key="top_p")
            upper = max(16, min(8192, (max_len or 8192) - 16))
            ss.max_tokens = min(ss.max_tokens, upper)
            st.number_input("Max answer tokens", 1, upper, step=64, key="max_tokens")
        return model, max_len


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
        st.caption(f"Model: **{name}**{limit}")
    return name, (by_id[name].max_model_len if name in by_id else None)


# ---------------------------------------------------------------- history
def _render_message(m: dict) -> None:
    with st.chat_message(m["role"]):
        if m["content"]:
            st.markdown(m["content"])
        note = answer_note(m.get("status", "complete"))
        if note:
            st.caption(note)
        if m.get("error"):
            st.error(m["error"], icon=":material/warning:")
        meta = m.get("meta") or {}
        if m["role"] == "assistant" and meta.get("completion_tokens"):
            st.caption(stats_line(meta))
        if meta.get("dropped_turns"):
            st.caption(
                f":material/info: {meta['dropped_turns']} older message(s) were not sent to the model: "
                "they no longer fit its context window."
            )


def _actions() -> None:
    if not ss.messages or ss.generate:
        return
    last = ss.messages[-1]
    failed = last["role"] == "user" or last.get("status") in ("failed", "interrupted")
    label, icon = ("Retry", ":material/replay:") if failed else ("Regenerate", ":material/refresh:")
    st.button(label, icon=icon, on_click=_redo_last, key="redo")


# ---------------------------------------------------------------- generation
def _submit(prompt: str) -> None:
    try:
        if not prompt.strip():
            raise EmptyPrompt()
        if len(prompt) > settings.max_prompt_chars:
            raise PromptTooLong(len(prompt), settings.max_prompt_chars)
    except LLMError as e:
        st.warning(llm_error_message(e), icon=":material/block:")
        if prompt.strip():
            with st.expander("Your message (copy it from here)"):
                st.code(prompt, language=None)
        return
    ss.messages.append({"role": "user", "content": prompt, "status": "complete"})
    ss.generate = True


def _turns() -> tuple[Turn, ...]:
    return tuple(
        Turn(m["role"], m["content"])
        for m in ss.messages
        if m["role"] in ("user", "assistant") and m["content"].strip()
    )


def _generate(model: str | None, max_len: int | None) -> None:
    ss.generate = False
    msg = {"role": "assistant", "content": "", "status": "streaming", "meta": {}}
    ss.messages.append(msg)
    with st.chat_message("assistant"):
        box = st.empty()
        box.markdown("…")
        # clicking Stop reruns the script, which interrupts the loop below at its next
        # redraw; the finally-block keeps the partial answer (and closes the stream)
        st.button("Stop", icon=":material/stop_circle:", key="stop")
        if model is None:
            _fail(msg, BackendUnreachable("no model is served"))
            st.rerun()
        request = ChatRequest(
            model=model,
            system=ss.system_prompt,
            turns=_turns(),
            params=GenerationParams(ss.temperature, ss.top_p, int(ss.max_tokens)),
            max_model_len=max_len,
        )
        gen = client.stream(request)
        last_draw = 0.0
        try:
            for _delta in gen:
                msg["content"] = gen.text
                now = time.monotonic()
                if now - last_draw >= REDRAW_EVERY_S:
                    box.markdown(gen.text + " ▌")
                    last_draw = now
            msg["status"] = "cut" if gen.stats.finish_reason == "length" else "complete"
        except LLMError as e:
            _fail(msg, e)
        finally:
            # reached with status "streaming" only when the user pressed stop (or sent
            # another message): keep the partial answer and mark it
            if msg["status"] == "streaming":
                msg["status"] = "stopped"
            msg["content"] = msg["content"] or gen.text
            gen.close()
            msg["meta"] = gen.stats.as_dict()
    st.rerun()


def _fail(msg: dict, err: LLMError) -> None:
    msg["content"] = err.partial_text or msg["content"]
    msg["status"] = "interrupted" if msg["content"] else "failed"
    msg["error"] = llm_error_message(err)


# ---------------------------------------------------------------- page
_init_state()
model, max_len = _sidebar()
st.title(settings.app_title)
if settings.llm_notice:
    st.warning(settings.llm_notice, icon=":material/science:")
if not ss.messages:
    st.caption("Ask anything. Answers stream in; press Stop to cut one short.")
for m in ss.messages:
    _render_message(m)
prompt = st.chat_input("Message the model", submit_mode="disable", key="prompt")
if prompt is not None:
    _submit(prompt)
    if ss.generate:
        _render_message(ss.messages[-1])
if ss.generate:
    _generate(model, max_len)
_actions()
