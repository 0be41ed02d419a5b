"""What the chat page keeps across runs: the model server's client, the store, the model
pools' view (``FLEET_DISCOVERY``), and the server facts it caches briefly (health, served
models). Built here only, keyed by everything they depend on.

The cached functions take keyword-only arguments: Streamlit names each positional
argument of a cached call with ``inspect.signature``, on every call (every page run, while
every other session streams); keywords need no lookup."""

from __future__ import annotations

import streamlit as st

from webapp.chat import fleet
from webapp.chat.fleet import CachedFleet
from webapp.llm.chat import ChatClient
from webapp.llm.server import BackendStatus, ModelInfo
from webapp.settings import Settings
from webapp.store import ConversationStore, PoolOptions


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


@st.cache_data(ttl=5, show_spinner=False)
def backend_status(*, _client: ChatClient, url: str) -> BackendStatus:
    return _client.status()


@st.cache_data(ttl=10, show_spinner=False)
def served_models(
    *, _client: ChatClient, url: str, configured: tuple[str, ...], discovered: tuple[str, ...] = ()
) -> list[ModelInfo]:
    """``/v1/models``, the LLM_MODELS names (``configured``) and the model pools'
    (``discovered``; both part of the cache key)."""
    return _client.models(discovered)


@st.cache_resource(show_spinner=False)
def _fleet(*, kubeconfig: str, namespace: str) -> CachedFleet:
    return CachedFleet(fleet.cluster_fleet(kubeconfig, namespace))  # no I/O until first use


def chat_fleet(settings: Settings) -> CachedFleet | None:
    """The process's view of the model pools, or None without ``FLEET_DISCOVERY``."""
    if not settings.fleet_discovery:
        return None
    return _fleet(kubeconfig=settings.kubeconfig, namespace=settings.k8s_namespace)


def forget_server_facts() -> None:
    """The server may have come back or changed: read its health and models again."""
    backend_status.clear()
    served_models.clear()
