import pytest
from pydantic import ValidationError

from webapp.settings import Settings


@pytest.mark.parametrize(
    ("env", "field", "expected"),
    [
        ({}, "llm_url", "http://localhost:8000"),
        ({"LLM_URL": "http://vllm:8000/"}, "llm_url", "http://vllm:8000"),
        ({"LLM_URL": "http://vllm:8000/v1"}, "llm_url", "http://vllm:8000"),
        ({"LLM_NAME": "  "}, "llm_name", None),
        ({"LLM_NAME": "meta-llama/Llama-2-7b-hf"}, "llm_name", "meta-llama/Llama-2-7b-hf"),
        ({"LLM_MODE": "completion"}, "llm_mode", "completion"),
        ({}, "served_model_names", ()),
        ({"LLM_MODELS": " , "}, "served_model_names", ()),
        ({"LLM_MODELS": "llama-2-7b"}, "served_model_names", ("llama-2-7b",)),
        (
            {"LLM_MODELS": " llama-2-7b, mistral-7b ,meta-llama/Llama-3.1-8B:q4 "},
            "served_model_names",
            ("llama-2-7b", "mistral-7b", "meta-llama/Llama-3.1-8B:q4"),
        ),
        ({"APP_MODE": "chat"}, "app_mode", "chat"),
        ({"MAX_PROMPT_CHARS": "100"}, "max_prompt_chars", 100),
        ({}, "database_pool_size", 5),
        ({"DATABASE_POOL_SIZE": "20"}, "database_pool_size", 20),
        ({"DATABASE_MAX_OVERFLOW": "0"}, "database_max_overflow", 0),
        ({"DATABASE_POOL_TIMEOUT_S": "2.5"}, "database_pool_timeout_s", 2.5),
        ({"LOCAL_ADMIN": "true"}, "local_admin", True),
        ({"LOCAL_ADMIN": "0"}, "local_admin", False),
        ({}, "max_concurrent_generations", 32),
        ({"MAX_CONCURRENT_GENERATIONS": "4"}, "max_concurrent_generations", 4),
        ({}, "trusted_proxy_hops", 1),
        ({"TRUSTED_PROXY_HOPS": "0"}, "trusted_proxy_hops", 0),
        ({}, "chat_require_login", False),
        ({"CHAT_REQUIRE_LOGIN": "true"}, "chat_require_login", True),
        ({}, "chat_busy_after_s", 2.0),
        ({"CHAT_BUSY_AFTER_S": "0.5"}, "chat_busy_after_s", 0.5),
        ({}, "chat_busy_poll_s", 2.0),
        ({"CHAT_BUSY_POLL_S": "5"}, "chat_busy_poll_s", 5.0),
        ({}, "fleet_discovery", False),
        ({"FLEET_DISCOVERY": "true"}, "fleet_discovery", True),
        ({"FLEET_DISCOVERY": "0"}, "fleet_discovery", False),
    ],
)
def test_settings_from_env(monkeypatch, env, field, expected):
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    assert getattr(Settings(), field) == expected


@pytest.mark.parametrize(
    ("env",),
    [
        ({"LLM_URL": "vllm:8000"},),
        ({"LLM_MODE": "magic"},),
        ({"LLM_MODELS": "llama-2-7b,llama-2-7b"},),  # twice
        ({"LLM_MODELS": "llama 2"},),  # a space inside a name
        ({"LLM_MODELS": "a,<img src=x>"},),
        ({"LLM_MODELS": "-leading-dash"},),
        ({"LLM_MODELS": "x" * 201},),
        ({"APP_MODE": "everything"},),
        ({"DEFAULT_TEMPERATURE": "3"},),
        ({"DEFAULT_TOP_P": "0"},),
        ({"DATABASE_POOL_SIZE": "0"},),
        ({"DATABASE_MAX_OVERFLOW": "-1"},),
        ({"DATABASE_POOL_TIMEOUT_S": "0"},),
        ({"LOCAL_ADMIN": "maybe"},),
        ({"MAX_CONCURRENT_GENERATIONS": "0"},),
        ({"TRUSTED_PROXY_HOPS": "-1"},),
        ({"CHAT_REQUIRE_LOGIN": "maybe"},),
        ({"CHAT_BUSY_AFTER_S": "0"},),
        ({"CHAT_BUSY_AFTER_S": "soon"},),
        ({"CHAT_BUSY_POLL_S": "0.1"},),
        ({"CHAT_BUSY_POLL_S": "61"},),
        ({"FLEET_DISCOVERY": "on the gateway"},),
    ],
)
def test_settings_reject_bad_values(monkeypatch, env):
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    with pytest.raises(ValidationError):
        Settings()


def test_api_key_never_in_repr(monkeypatch):
    monkeypatch.setenv("LLM_API_KEY", "sk-very-secret")
    s = Settings()
    assert "sk-very-secret" not in repr(s) and "sk-very-secret" not in str(s.model_dump())
    assert s.llm_api_key.get_secret_value() == "sk-very-secret"


def test_admin_allowlist_normalised(monkeypatch):
    monkeypatch.setenv("ADMIN_EMAILS", " Alice@Example.com, ,bob@example.com ")
    assert Settings().admin_allowlist == {"alice@example.com", "bob@example.com"}


def test_bad_llm_models_says_which_name(monkeypatch):
    monkeypatch.setenv("LLM_MODELS", "mistral-7b, bad name")
    with pytest.raises(ValidationError, match="LLM_MODELS: 'bad name' is not a served model name"):
        Settings()
