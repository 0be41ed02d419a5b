"""The chat page's sidebar: new chat, the model server's state, the model, the generation
settings (drawn from ``webapp.chat.options.knobs``), the conversation list, log in/out."""

from __future__ import annotations

import streamlit as st

from webapp.access.identity import Owner
from webapp.access.ui.identify import oidc_configured
from webapp.chat.fleet import CachedFleet
from webapp.chat.history import History
from webapp.chat.messages import display_title, llm_error_message
from webapp.chat.options import MODEL, Knob, knobs
from webapp.chat.ui.conversation import new_chat, open_chat
from webapp.chat.ui.resources import backend_status, served_models
from webapp.llm.chat import ChatClient
from webapp.llm.errors import LLMError
from webapp.llm.server import BackendState, BackendStatus, ModelInfo
from webapp.settings import Settings
from webapp.ui.safe_markdown import safe_markdown
from webapp.ui.text import literal

ss = st.session_state

_STATE_LABEL = {
    BackendState.HEALTHY: (":green[:material/check_circle:]", "Model server healthy"),
    BackendState.LOADING: (":orange[:material/hourglass_top:]", "Model server loading"),
    BackendState.UNREACHABLE: (":red[:material/error:]", "Model server unreachable"),
}


def sidebar(
    settings: Settings,
    client: ChatClient,
    history: History,
    owner: Owner,
    fleet: CachedFleet | None = None,
) -> tuple[str | None, int | None]:
    """Render the sidebar; return the chosen model and its context length."""
    with st.sidebar:
        st.button(
            "New chat",
            icon=":material/add:",
            on_click=new_chat,
            use_container_width=True,
            key="new_chat",
        )
        status = backend_status(client=client, url=settings.llm_url)
        icon, label = _STATE_LABEL[status.state]
        st.markdown(f"{icon} **{label}**")
        if status.detail:
            st.caption(status.detail)
        models = _models(settings, client, status, fleet)
        model, max_len = _pick_model(settings, models)
        if model and fleet is not None and fleet.state(model) == "asleep":
            st.caption("This model is asleep: your next message wakes it up.")
        with st.expander("Settings", expanded=False):
            for knob in knobs(settings):
                _knob(knob, max_len)
        _conversation_list(history)
        _account(owner)
        return model, max_len


def _models(
    settings: Settings, client: ChatClient, status: BackendStatus, fleet: CachedFleet | None
) -> list[ModelInfo]:
    """What the picker offers: the server's models with LLM_MODELS and, with
    ``FLEET_DISCOVERY``, every model the pools serve — also when the server's default
    model does not answer (a sleeping one is listed, to be woken). The fleet unreadable:
    as without discovery."""
    discovered = tuple((fleet.models() or []) if fleet is not None else [])
    if status.state is BackendState.HEALTHY:
        try:
            return served_models(
                client=client,
                url=settings.llm_url,
                configured=client.configured_models,
                discovered=discovered,
            )
        except LLMError as e:
            st.caption(safe_markdown(f"Could not list models: {llm_error_message(e)}"))
    return [ModelInfo(name, None) for name in discovered]


def _knob(knob: Knob, max_len: int | None) -> None:
    """One generation setting's widget, keyed by the setting's name."""
    if knob.kind == "text":
        st.text_area(knob.label, key=knob.key, height=100, max_chars=int(knob.high))
    elif knob.kind == "slider":
        st.slider(knob.label, knob.low, knob.high, step=knob.step, key=knob.key)
    else:  # tokens: an answer must leave room for the prompt in the model's context
        high = int(knob.high)
        upper = max(16, min(high, (max_len or high) - 16))
        ss[knob.key] = min(ss[knob.key], upper)
        st.number_input(knob.label, int(knob.low), upper, step=int(knob.step), key=knob.key)


def _pick_model(settings: Settings, models: list[ModelInfo]) -> tuple[str | None, int | None]:
    by_id = {m.id: m for m in models}
    if settings.llm_name:
        name = settings.llm_name
        if models and name not in by_id:
            st.warning(f"The configured model {name!r} is not served right now.")
    elif len(models) > 1:
        if ss.get(MODEL) not in by_id:  # e.g. a reopened conversation's model, gone since
            ss.pop(MODEL, None)
        name = st.selectbox("Model", list(by_id), key=MODEL)
    elif models:
        name = models[0].id
    else:
        name = None
    if name:
        info = by_id.get(name)
        limit = f" · context {info.max_model_len:,} tokens" if info and info.max_model_len else ""
        st.caption(f"Model: **{literal(name)}**{limit}")
    return name, (by_id[name].max_model_len if name in by_id else None)


def _conversation_list(history: History) -> None:
    convs = history.conversations(include_ids=ss.opened_ids)
    if not convs:
        return
    box = st.sidebar.container()
    box.caption("Conversations")
    for c in convs:
        box.button(
            display_title(c.title),
            key=f"conv_{c.id}",
            on_click=open_chat,
            args=(c.id,),
            use_container_width=True,
            type="secondary" if c.id == ss.conv_id else "tertiary",
        )


def _account(owner: Owner) -> None:
    """Log in / out (only when OIDC login is configured); guests keep working without it."""
    if not oidc_configured():
        return
    if owner.anonymous:
        st.caption("Log in to keep your conversations on every device.")
        st.button("Log in", icon=":material/login:", key="login", on_click=st.login)
    else:
        st.caption(f"Signed in as **{literal(owner.label)}**")  # a name from the IdP
        st.button("Log out", icon=":material/logout:", key="logout", on_click=st.logout)
