"""What the chat page keeps across runs: the model server's client, the store, the model
pools' view (``FLEET_DISCOVERY``), and the server facts it caches briefly (health, served
models; stale-while-revalidate, so that no page run waits for them once they are known).
Built here only, keyed by everything they depend on.

The cached functions take keyword-only arguments: Streamlit names each positional
argument of a cached call with ``inspect.signature``, on every call (every page run, while
every other session streams); keywords need no lookup."""

from __future__ import annotations

import streamlit as st

from webapp.chat import fleet
from webapp.chat.fleet import CachedFleet
from webapp.llm.chat import ChatClient
from webapp.llm.server import BackendStatus, ModelInfo
from webapp.revalidate import StaleWhileRevalidate
from webapp.settings import Settings
from webapp.store import ConversationStore, PoolOptions

#: the model server's health and models are read again after these many seconds — in the
#: background: a page run (the one sending a message too) gets the last answer at once
HEALTH_TTL_S = 5.0
MODELS_TTL_S = 10.0
#: an answer older than this is not shown: the page run waits for a new one (e.g. the first
#: run after a quiet spell, or while the server keeps failing: its error is then shown)
FACTS_MAX_STALE_S = 30.0


@st.cache_resource(show_spinner=False)
def _client(
    *,
    url: str,
    api_key: str,
    mode: str,
    timeout_s: float,
    deadline_s: float,
    models: tuple[str, ...],
) -> ChatClient:
    return ChatClient(url, api_key, mode, timeout_s, deadline_s, models)  # type: ignore[arg-type]


def chat_client(settings: Settings) -> ChatClient:
    """The process's client for the configured model server."""
    return _client(
        url=settings.llm_url,
        api_key=settings.llm_api_key.get_secret_value(),
        mode=settings.llm_mode,
        timeout_s=settings.llm_timeout_s,
        deadline_s=settings.llm_answer_deadline_s,
        models=settings.served_model_names,
    )


@st.cache_resource(show_spinner=False)
def _store(*, database_url: str, pool: PoolOptions) -> ConversationStore:
    return ConversationStore(database_url, pool=pool)  # no I/O until first use


def conversation_store(settings: Settings) -> ConversationStore:
    """The process's conversation store."""
    return _store(
        database_url=settings.database_url,
        pool=PoolOptions(
            settings.database_pool_size,
            settings.database_max_overflow,
            settings.database_pool_timeout_s,
            settings.database_connect_timeout_s,
        ),
    )


@st.cache_resource(show_spinner=False)
def _facts(*, kind: str) -> StaleWhileRevalidate:
    """One cache per kind of server fact, shared by every session of the process."""
    return StaleWhileRevalidate(max_stale_s=FACTS_MAX_STALE_S, name=f"server-{kind}")


def backend_status(*, client: ChatClient, url: str) -> BackendStatus:
    """``/health``: read at most every ``HEALTH_TTL_S``, in the background once known."""
    return _facts(kind="health").get(url, client.status, ttl_s=HEALTH_TTL_S)


def served_models(
    *, client: ChatClient, url: str, configured: tuple[str, ...], discovered: tuple[str, ...] = ()
) -> list[ModelInfo]:
    """``/v1/models``, the LLM_MODELS names (``configured``) and the model pools'
    (``discovered``; all three the cache key): read at most every ``MODELS_TTL_S``, in the
    background once known. ``LLMError`` when they cannot be read and nothing young enough
    is known."""
    key = (url, configured, discovered)
    return list(
        _facts(kind="models").get(key, lambda: client.models(discovered), ttl_s=MODELS_TTL_S)
    )


@st.cache_resource(show_spinner=False)
def _fleet(*, kubeconfig: str, namespace: str) -> CachedFleet:
    return CachedFleet(fleet.cluster_fleet(kubeconfig, namespace))  # no I/O until first use


def chat_fleet(settings: Settings) -> CachedFleet | None:
    """The process's view of the model pools, or None without ``FLEET_DISCOVERY``."""
    if not settings.fleet_discovery:
        return None
    return _fleet(kubeconfig=settings.kubeconfig, namespace=settings.k8s_namespace)


def forget_server_facts() -> None:
    """The server may have come back or changed: the next page run waits for its health
    and models, read anew."""
    _facts(kind="health").forget()
    forget_served_models()


def forget_served_models() -> None:
    """The served model changed (a switch followed, a model gone): the next page run waits
    for the list, read anew."""
    _facts(kind="models").forget()
