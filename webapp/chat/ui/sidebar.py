"""The chat page's sidebar: new chat, the model server's state, the model, the generation
settings (drawn from ``webapp.chat.options.knobs``), the conversation list, log in/out."""

from __future__ import annotations

from dataclasses import dataclass

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
_CHANGED = "settings_changed"  # a generation setting was changed (set by its widget)

_STATE_LABEL = {
    BackendState.HEALTHY: (":green[:material/check_circle:]", "Model server healthy"),
    BackendState.LOADING: (":orange[:material/hourglass_top:]", "Model server loading"),
    BackendState.UNREACHABLE: (":red[:material/error:]", "Model server unreachable"),
}


@dataclass(frozen=True)
class ModelChoice:
    """What the sidebar offers and what this run answers with, decided before anything is
    drawn (``model_choice``), so that a message can be sent before the page is drawn."""

    status: BackendStatus
    models: tuple[ModelInfo, ...]
    model: str | None
    max_len: int | None
    problem: str | None = None  # the models could not be listed: why, in plain words


def model_choice(
    settings: Settings, client: ChatClient, fleet: CachedFleet | None = None
) -> ModelChoice:
    """The server's state, the models offered and the one chosen (the picker's value, else
    the first), with the answer-length setting kept within the model's context. Draws
    nothing."""
    status = backend_status(client=client, url=settings.llm_url)
    models, problem = _models(settings, client, status, fleet)
    by_id = {m.id: m for m in models}
    if settings.llm_name:
        name = settings.llm_name
    elif len(models) > 1:
        if ss.get(MODEL) not in by_id:  # e.g. a reopened conversation's model, gone since
            ss.pop(MODEL, None)
        name = ss.get(MODEL, models[0].id)  # the picker's value (drawn by ``sidebar``)
    else:
        name = models[0].id if models else None
    max_len = by_id[name].max_model_len if name in by_id else None
    for knob in knobs(settings):
        if knob.kind == "tokens":  # an answer must leave room for the prompt in the context
            ss[knob.key] = min(ss[knob.key], _tokens_upper(knob, max_len))
    return ModelChoice(status, tuple(models), name, max_len, problem)


def sidebar(
    settings: Settings, history: History, owner: Owner, choice: ModelChoice,
    fleet: CachedFleet | None = None,
) -> None:  # fmt: skip
    """Render the sidebar for ``choice`` (``model_choice``, this run's)."""
    with st.sidebar:
        st.button(
            "New chat",
            icon=":material/add:",
            on_click=new_chat,
            use_container_width=True,
            key="new_chat",
        )
        icon, label = _STATE_LABEL[choice.status.state]
        st.markdown(f"{icon} **{label}**")
        if choice.status.detail:
            st.caption(choice.status.detail)
        if choice.problem:
            st.caption(safe_markdown(f"Could not list models: {choice.problem}"))
        asleep = bool(choice.model and fleet is not None and fleet.state(choice.model) == "asleep")
        ss.pop(_CHANGED, None)  # this run of the whole page takes any change already
        _next_answer(settings, choice, asleep)
        _conversation_list(history)
        _account(owner)


def _models(
    settings: Settings, client: ChatClient, status: BackendStatus, fleet: CachedFleet | None
) -> tuple[list[ModelInfo], str | None]:
    """What the picker offers: the server's models with LLM_MODELS and, with
    ``FLEET_DISCOVERY``, every model the pools serve — also when the server's default
    model does not answer (a sleeping one is listed, to be woken). The fleet unreadable:
    as without discovery. Also why the server's models could not be listed (None: they were)."""
    discovered = tuple((fleet.models() or []) if fleet is not None else [])
    if status.state is BackendState.HEALTHY:
        try:
            return served_models(
                client=client,
                url=settings.llm_url,
                configured=client.configured_models,
                discovered=discovered,
            ), None
        except LLMError as e:
            return [ModelInfo(name, None) for name in discovered], llm_error_message(e)
    return [ModelInfo(name, None) for name in discovered], None


def _tokens_upper(knob: Knob, max_len: int | None) -> int:
    high = int(knob.high)
    return max(16, min(high, (max_len or high) - 16))


@st.fragment
def _next_answer(settings: Settings, choice: ModelChoice, asleep: bool) -> None:
    """The model and the generation settings. A fragment: a model picked or a setting
    changed while an answer streams does not stop the answer (the fragment's rerun waits
    for the page's run); it applies to the next one.
    When the fragment ran alone, the whole page is then run again, as without the fragment
    (the chat box, disabled while an answer streams, is enabled again only by a run of the
    whole page); a run of the whole page takes the change itself (``sidebar`` drops the flag
    first, so a message sent along with the change is not cut short by a rerun)."""
    _model_picker(settings, choice)
    if asleep:
        st.caption("This model is asleep: your next message wakes it up.")
    with st.expander("Settings", expanded=False):
        for knob in knobs(settings):
            _knob(knob, choice.max_len)
    if ss.pop(_CHANGED, False):
        st.rerun()


def _changed() -> None:
    ss[_CHANGED] = True


def _knob(knob: Knob, max_len: int | None) -> None:
    """One generation setting's widget, keyed by the setting's name."""
    if knob.kind == "text":
        st.text_area(
            knob.label, key=knob.key, height=100, max_chars=int(knob.high), on_change=_changed
        )
    elif knob.kind == "slider":
        st.slider(knob.label, knob.low, knob.high, step=knob.step, key=knob.key, on_change=_changed)
    else:  # tokens: kept within the model's context by ``model_choice``
        upper = _tokens_upper(knob, max_len)
        st.number_input(
            knob.label, int(knob.low), upper, step=int(knob.step), key=knob.key,
            on_change=_changed,
        )  # fmt: skip


def _model_picker(settings: Settings, choice: ModelChoice) -> None:
    """The picker when there is a choice, else which model answers."""
    by_id = {m.id: m for m in choice.models}
    name = choice.model
    if settings.llm_name:
        if choice.models and name not in by_id:
            st.warning(f"The configured model {name!r} is not served right now.")
    elif len(choice.models) > 1:
        st.selectbox("Model", list(by_id), key=MODEL, on_change=_changed)
    if name:
        info = by_id.get(name)
        limit = f" · context {info.max_model_len:,} tokens" if info and info.max_model_len else ""
        st.caption(f"Model: **{literal(name)}**{limit}")


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
