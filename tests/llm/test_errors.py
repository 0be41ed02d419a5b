"""Error mapping: exceptions of openai/httpx -> our typed errors (table-driven)."""

import httpx
import openai
import pytest

from webapp.llm import errors as E
from webapp.llm.chat import map_error

REQ = httpx.Request("POST", "http://x/v1/chat/completions")


def status_error(code, message):
    body = {"error": {"message": message, "type": "BadRequestError", "code": code}}
    resp = httpx.Response(code, json=body, request=REQ)
    cls = {
        400: openai.BadRequestError,
        401: openai.AuthenticationError,
        404: openai.NotFoundError,
        429: openai.RateLimitError,
    }.get(code, openai.InternalServerError)
    return cls(message, response=resp, body=body["error"])


CTX = (
    "This model's maximum context length is 1024 tokens. However, you requested 1500 "
    "tokens (1000 in the messages, 500 in the completion)."
)
TPL = "As of transformers v4.44, default chat template is no longer allowed, so you must provide a chat template if the tokenizer does not define one."


@pytest.mark.parametrize(
    ("exc", "partial", "expected", "retryable"),
    [
        (status_error(400, CTX), "", E.ContextOverflow, False),
        (status_error(400, TPL), "", E.ChatTemplateMissing, False),
        (status_error(400, "bad top_p"), "", E.BackendHTTPError, False),
        (status_error(401, "no key"), "", E.BackendAuthError, False),
        (status_error(404, "The model `x` does not exist."), "", E.ModelNotFound, False),
        (status_error(429, "busy"), "", E.BackendHTTPError, True),
        (status_error(500, "boom"), "", E.BackendHTTPError, True),
        (status_error(503, "loading"), "", E.BackendHTTPError, True),
        (openai.APIConnectionError(request=REQ), "", E.BackendUnreachable, True),
        (openai.APITimeoutError(request=REQ), "", E.BackendTimeout, True),
        (httpx.ConnectError("refused"), "", E.BackendUnreachable, True),
        (httpx.ReadTimeout("slow"), "", E.BackendTimeout, True),
        (httpx.RemoteProtocolError("peer closed"), "partial", E.StreamInterrupted, True),
        (httpx.ReadError("reset"), "partial", E.StreamInterrupted, True),
        (openai.APIConnectionError(request=REQ), "some text", E.StreamInterrupted, True),
        (openai.APITimeoutError(request=REQ), "some text", E.StreamInterrupted, True),
        (RuntimeError("odd"), "", E.LLMError, True),
    ],
)
def test_map_error(exc, partial, expected, retryable):
    err = map_error(exc, partial)
    assert type(err) is expected
    assert err.retryable is retryable
    assert err.partial_text == partial


def test_map_error_keeps_typed_errors_and_adds_partial():
    e = E.BackendUnreachable("x")
    assert map_error(e, "abc") is e and e.partial_text == "abc"


def test_http_status_is_kept():
    err = map_error(status_error(503, "loading"))
    assert err.status == 503 and "loading" in err.detail
