"""The chat page's cached resources are called by keyword: Streamlit looks up a cached
call's positional argument names with ``inspect.signature`` on every call (every page run),
which the chunk-cost profile showed at 5% of the app's CPU while 16 sessions streamed."""

from __future__ import annotations

import inspect

import pytest
from streamlit import type_util

from tests.fakes.openai_server import FakeOpenAI
from webapp.chat.ui import resources
from webapp.settings import Settings

CACHED = [
    resources._client,
    resources._store,
    resources._fleet,
    resources._facts,
]


@pytest.mark.parametrize("cached", CACHED, ids=lambda f: f.__name__)
def test_cached_functions_take_keywords_only(cached):
    params = inspect.signature(cached).parameters.values()
    assert params and all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in params)
    with pytest.raises(TypeError):
        cached(*[None] * len(params))  # a positional call would fall back to the lookup


def test_a_page_runs_cached_calls_look_up_no_signature(monkeypatch, tmp_path):
    calls = []
    real = type_util.get_func_parameters
    monkeypatch.setattr(type_util, "get_func_parameters", lambda f: calls.append(f) or real(f))
    with FakeOpenAI(model="m") as fake:
        settings = Settings(llm_url=fake.url, database_url=f"sqlite:///{tmp_path / 'c.db'}")
        for _ in range(2):  # the first builds, the second finds them
            client = resources.chat_client(settings)
            store = resources.conversation_store(settings)
            status = resources.backend_status(client=client, url=settings.llm_url)
            assert status.state == "healthy"
            models = resources.served_models(
                client=client, url=settings.llm_url, configured=client.configured_models
            )
        assert [m.id for m in models] == ["m"]
        assert resources.chat_client(settings) is client
        assert resources.conversation_store(settings) is store
    store.dispose()
    assert calls == []
