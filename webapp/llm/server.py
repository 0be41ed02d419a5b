"""Plain HTTP calls to the vLLM server: health, served models, tokenization."""

from __future__ import annotations

import enum
import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import httpx

from webapp.llm.errors import (
    BackendAuthError,
    BackendHTTPError,
    BackendTimeout,
    BackendUnreachable,
    LLMError,
)
from webapp.llm.metrics import MetricsUnavailable, fetch_metrics


class BackendState(enum.StrEnum):
    HEALTHY = "healthy"
    LOADING = "loading"
    UNREACHABLE = "unreachable"


@dataclass(frozen=True)
class BackendStatus:
    """What the sidebar shows: the state and a short technical detail."""

    state: BackendState
    detail: str = ""


@dataclass(frozen=True)
class ModelInfo:
    """One entry of ``GET /v1/models``."""

    id: str
    max_model_len: int | None


@functools.cache
def _http() -> httpx.Client:
    """One pooled client per process, made on first use: ``httpx.get``/``post`` build a
    new client per call, which loads the CA bundle (~40 ms) and opens a new connection
    on the path of every chat message (``/tokenize`` runs before each answer)."""
    return httpx.Client()


def _headers(api_key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}


def _get(url: str, api_key: str | None, timeout: float) -> httpx.Response:
    try:
        return _http().get(url, headers=_headers(api_key), timeout=timeout)
    except httpx.TimeoutException as e:
        raise BackendTimeout(str(e)) from e
    except httpx.TransportError as e:
        raise BackendUnreachable(str(e)) from e


def health(base_url: str, api_key: str | None = None, timeout: float = 3.0) -> BackendStatus:
    """Healthy when ``/health`` answers 200; loading on 503 or timeout; unreachable otherwise.

    vLLM opens its HTTP port only after the model is loaded, so in a cluster a
    refused connection during a rollout also means "not there yet".
    """
    try:
        r = _get(f"{base_url}/health", api_key, timeout)
    except BackendTimeout:
        return BackendStatus(BackendState.LOADING, "health check timed out")
    except BackendUnreachable:
        return BackendStatus(BackendState.UNREACHABLE, f"cannot connect to {base_url}")
    if r.status_code == 200:
        return BackendStatus(BackendState.HEALTHY)
    if r.status_code in (502, 503, 504):
        return BackendStatus(BackendState.LOADING, f"HTTP {r.status_code}")
    return BackendStatus(BackendState.UNREACHABLE, f"HTTP {r.status_code}")


def list_models(base_url: str, api_key: str | None = None, timeout: float = 5.0) -> list[ModelInfo]:
    """The served models with their context length, from ``GET /v1/models``."""
    r = _get(f"{base_url}/v1/models", api_key, timeout)
    _raise_for_status(r)
    try:
        data = r.json()["data"]
        return [ModelInfo(str(m["id"]), _int_or_none(m.get("max_model_len"))) for m in data]
    except (ValueError, KeyError, TypeError) as e:
        raise BackendHTTPError(r.status_code, f"unexpected /v1/models reply: {e}") from e


def _tokenize(
    base_url: str, body: dict[str, object], api_key: str | None, timeout: float
) -> httpx.Response:
    """``POST /tokenize``, transport failures and error statuses raised as typed errors."""
    try:
        r = _http().post(
            f"{base_url}/tokenize", json=body, headers=_headers(api_key), timeout=timeout
        )
    except httpx.TimeoutException as e:
        raise BackendTimeout(str(e)) from e
    except httpx.TransportError as e:
        raise BackendUnreachable(str(e)) from e
    _raise_for_status(r)
    return r


def model_info(
    base_url: str, model: str, api_key: str | None = None, timeout: float = 3.0
) -> ModelInfo:
    """One model's facts from ``POST /tokenize`` (its reply carries ``max_model_len``).

    Behind a gateway that routes on the body's ``model`` (GKE Inference Gateway), this
    request reaches the model's own pool, where ``GET /v1/models`` (no body) reaches only
    the default pool."""
    r = _tokenize(base_url, {"model": model, "prompt": ""}, api_key, timeout)
    try:
        return ModelInfo(model, _int_or_none(r.json().get("max_model_len")))
    except (ValueError, AttributeError) as e:
        raise LLMError(f"unexpected /tokenize reply: {e}") from e


def answers(base_url: str, model: str, api_key: str | None = None) -> bool:
    """Whether ``model`` answers through ``base_url`` now: behind a gateway, whether its
    pool has a ready replica the gateway routes to (``POST /tokenize`` names the model)."""
    try:
        model_info(base_url, model, api_key)
    except LLMError:
        return False
    return True


def served_models(
    base_url: str, configured: Sequence[str] = (), api_key: str | None = None
) -> list[ModelInfo]:
    """What ``GET /v1/models`` lists, then each ``configured`` name (LLM_MODELS) it does not.

    A configured model is offered even when its pool does not answer now (its context
    length then unknown): asking it gives the plain error of the failure, not silence."""
    listed = list_models(base_url, api_key)
    known = {m.id for m in listed}
    for name in configured:
        if name in known:
            continue
        try:
            listed.append(model_info(base_url, name, api_key))
        except LLMError:
            listed.append(ModelInfo(name, None))
    return listed


def count_tokens(
    base_url: str,
    model: str,
    *,
    prompt: str | None = None,
    messages: Sequence[dict[str, str]] | None = None,
    api_key: str | None = None,
    timeout: float = 5.0,
) -> int:
    """Exact prompt token count from vLLM's ``POST /tokenize`` (chat template applied for messages).

    Raises ``LLMError`` when the server has no such endpoint; callers fall back
    to an estimate.
    """
    body: dict[str, object] = {"model": model}
    if messages is not None:
        body["messages"] = list(messages)
        body["add_generation_prompt"] = True
    else:
        body["prompt"] = prompt or ""
    r = _tokenize(base_url, body, api_key, timeout)
    try:
        return int(r.json()["count"])
    except (ValueError, KeyError, TypeError) as e:
        raise LLMError(f"unexpected /tokenize reply: {e}") from e


def requests_waiting(base_url: str, api_key: str | None = None, timeout: float = 2.0) -> int | None:
    """How many requests wait in the server's queue (``vllm:num_requests_waiting`` on its
    ``/metrics``); None when that cannot be read or makes no sense (never an error: the
    chat only uses it to tell a waiting user why)."""
    try:
        waiting = fetch_metrics(base_url, api_key, timeout, client=_http()).num_requests_waiting
    except MetricsUnavailable:
        return None
    return int(waiting) if math.isfinite(waiting) and 0 <= waiting < 1_000_000 else None


def _raise_for_status(r: httpx.Response) -> None:
    if r.status_code < 400:
        return
    detail = _error_message(r)
    if r.status_code in (401, 403):
        raise BackendAuthError(r.status_code, detail)
    raise BackendHTTPError(r.status_code, detail)


def _error_message(r: httpx.Response) -> str:
    try:
        body = r.json()
    except ValueError:
        return r.text[:300]
    if isinstance(body, dict):
        err = body.get("error")
        if isinstance(err, dict) and "message" in err:
            return str(err["message"])
        if "message" in body:
            return str(body["message"])
        if isinstance(body.get("detail"), str):
            return body["detail"]
    return str(body)[:300]


def _int_or_none(v: object) -> int | None:
    try:
        return int(v)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
