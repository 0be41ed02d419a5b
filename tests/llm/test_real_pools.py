"""The chat across two model pools: two REAL vLLM servers (CPU build, the tiny model served as
``tiny-chat`` with a chat template and as ``tiny-base`` without) behind a REAL proxy that routes
on the body's ``model`` (HAProxy, tests/support/model_router.py), standing in for GKE Inference
Gateway: ``GET /v1/models`` reaches the default pool only, so the second model is known from
``LLM_MODELS``.

Checked: the app's own client (webapp/llm) and the chat page list both models and stream an
answer from each, chat mode for one and completion mode for the other (each model's mode is its
own); the proxy's log and each vLLM's ``/metrics`` prove which server answered.
"""

from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from streamlit.testing.v1 import AppTest

from tests.support.model_router import ModelRouter
from webapp.llm.chat import ChatClient, ChatRequest, GenerationParams
from webapp.llm.errors import BackendHTTPError
from webapp.llm.prompts import Turn
from webapp.llm.server import model_info
from webapp.settings import Settings, get_settings

pytestmark = [pytest.mark.vllm]

PAGE = str(Path(__file__).resolve().parents[2] / "webapp" / "chat" / "ui" / "page.py")


@pytest.fixture(scope="module")
def router(vllm_chat, vllm_base, tmp_path_factory):
    """The gateway stand-in: tiny-chat (the default pool) and tiny-base, by the body's model."""
    proxy = ModelRouter(
        {vllm_chat.model: vllm_chat.url, vllm_base.model: vllm_base.url},
        default=vllm_chat.model,
        tmp=tmp_path_factory.mktemp("router"),
    ).start()
    yield proxy
    proxy.stop()


@pytest.fixture
def settings(router, vllm_chat, vllm_base, monkeypatch):
    """The app's settings for the pooled install: LLM_URL is the gateway, LLM_MODELS both."""
    monkeypatch.setenv("LLM_URL", router.url)
    monkeypatch.setenv("LLM_MODELS", f"{vllm_chat.model},{vllm_base.model}")
    return Settings()


def answered(server) -> float:
    """Requests this vLLM finished (``vllm:request_success_total``, every finish reason)."""
    text = httpx.get(f"{server.url}/metrics", timeout=5).text
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        if family.name == "vllm:request_success"
        for sample in family.samples
        if sample.name == "vllm:request_success_total"
    )


def client_for(settings: Settings) -> ChatClient:
    """The client the chat page builds (webapp/chat/ui/resources.py), from the same settings."""
    return ChatClient(
        settings.llm_url,
        settings.llm_api_key.get_secret_value(),
        settings.llm_mode,
        settings.llm_timeout_s,
        settings.llm_answer_deadline_s,
        settings.served_model_names,
    )


def test_both_models_listed_through_the_gateway(router, settings, vllm_chat, vllm_base):
    client = client_for(settings)
    seen = len(router.routes())
    assert client.status().state == "healthy"
    models = client.models()
    assert [(m.id, m.max_model_len) for m in models] == [
        (vllm_chat.model, vllm_chat.max_model_len),  # from /v1/models of the default pool
        (vllm_base.model, vllm_base.max_model_len),  # from tiny-base's own /tokenize
    ]
    assert router.routes(seen, 3) == [
        ("pool_default", "GET", "/health", 200),
        ("pool_default", "GET", "/v1/models", 200),
        (router.backend_of[vllm_base.model], "POST", "/tokenize", 200),
    ]
    # without LLM_MODELS the gateway's /v1/models shows the default pool only
    assert [m.id for m in ChatClient(router.url).models()] == [vllm_chat.model]


def test_each_model_answers_from_its_own_server(router, settings, vllm_chat, vllm_base):
    client = client_for(settings)
    for server, mode in ((vllm_chat, "chat"), (vllm_base, "completion")):
        before = {s.model: answered(s) for s in (vllm_chat, vllm_base)}
        seen = len(router.routes())
        turns = (Turn("user", "hello"),)
        request = ChatRequest(server.model, "Be terse.", turns, GenerationParams(0.0, 1.0, 8))
        generation = client.stream(request)
        pieces = list(generation)
        assert pieces and "".join(pieces) == generation.text
        assert generation.stats.mode == mode  # each model's own mode, through one URL
        assert generation.stats.finish_reason in ("stop", "length")
        after = {s.model: answered(s) for s in (vllm_chat, vllm_base)}
        assert {m: after[m] - before[m] for m in after} == {
            vllm_chat.model: 1.0 if server is vllm_chat else 0.0,
            vllm_base.model: 1.0 if server is vllm_base else 0.0,
        }
        pool = router.backend_of[server.model]
        expected = [(pool, "POST", "/v1/chat/completions", 200)]
        if mode == "completion":  # a base model refuses chat once; the client remembers it
            expected = [(pool, "POST", "/v1/chat/completions", 400)]
            expected.append((pool, "POST", "/v1/completions", 200))
        assert router.routes(seen, len(expected)) == expected


def test_a_model_no_pool_serves_is_offered_without_its_context(router, vllm_chat):
    client = ChatClient(router.url, configured_models=("retired-model",))
    assert [(m.id, m.max_model_len) for m in client.models()][-1] == ("retired-model", None)
    # vLLM itself answers /tokenize for a model it does not serve with 404 (as the fake does)
    with pytest.raises(BackendHTTPError) as caught:
        model_info(vllm_chat.url, "retired-model")
    assert caught.value.status == 404


@pytest.fixture
def page(settings, tmp_path, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'chat.db'}")
    get_settings.cache_clear()
    at = AppTest.from_file(PAGE, default_timeout=120)
    at.run()
    yield at
    get_settings.cache_clear()


def test_the_chat_page_lists_both_and_answers_from_each(page, vllm_chat, vllm_base):
    assert not page.exception
    assert page.selectbox(key="model").options == [vllm_chat.model, vllm_base.model]
    for number, server in enumerate((vllm_chat, vllm_base)):
        before = answered(server)
        page.selectbox(key="model").set_value(server.model).run()
        page.chat_input[0].set_value(f"hello {number}").run()
        assert not page.exception
        reply = page.chat_message[2 * number + 1]
        assert reply.name == "assistant" and not reply.error
        assert answered(server) == before + 1
