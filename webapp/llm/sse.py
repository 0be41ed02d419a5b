"""A streamed answer read as plain dicts, for LangChain's OpenAI clients.

``ChatOpenAI`` and ``VLLMOpenAI`` call ``client.create(**payload)`` on the ``openai`` SDK's
resource and iterate what it returns; both accept a chunk that is already a ``dict``. The
SDK builds a pydantic object per chunk, which LangChain turns straight back into a dict
(``model_dump()`` / ``.dict()``): at 100 tokens/s per user that was most of the app's CPU
per streamed chunk (bench/results/chunk-cost-profile.md: the SDK's stream 41 % of all
samples). ``DictStreamResource`` wraps the resource: the request itself is still the SDK's
(URL, headers, timeouts; a refused request raises its ``APIStatusError``, a failed
connection its ``APIConnectionError`` / ``APITimeoutError``); only the body of a streamed
answer is read here, as server-sent events (``httpx-sse``), each event's JSON a dict, with
the SDK's rules: ``[DONE]`` ends the stream, an event carrying ``error`` raises
``openai.APIError``, a timeout or a broken connection while reading raises
``APITimeoutError`` / ``APIConnectionError`` (the SDK sends with ``httpx2``; an ``httpx``
client given to it is accepted too), and the response is closed however the stream ends.
A body that is not an event stream raises ``APIError`` saying so (the SDK read it as an
empty answer).
"""

from __future__ import annotations

import json
import ssl
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import httpx
import httpx2
import openai
from httpx_sse import EventSource, SSEError

#: the SDK's words when an error event carries no message of its own
NO_MESSAGE = "An error occurred during streaming"
_TIMEOUTS = (httpx2.TimeoutException, httpx.TimeoutException)
_BROKEN = (httpx2.RequestError, httpx.RequestError, ssl.SSLError)
#: set, where a caller asked (``noting_response``), once a streamed request has its
#: response's headers, or has failed
_responded: ContextVar[threading.Event | None] = ContextVar("responded", default=None)


@contextmanager
def noting_response(responded: threading.Event) -> Iterator[None]:
    """Streamed requests made in this context (and in threads started meanwhile with a copy
    of it) set ``responded`` once the server has answered with headers, or the request failed:
    the request has then reached the server."""
    token = _responded.set(responded)
    try:
        yield
    finally:
        _responded.reset(token)


class DictChunks:
    """The events of one streamed answer as dicts; a context manager that closes the HTTP
    response (so vLLM aborts the request) when left, like the SDK's ``Stream``."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response

    def __enter__(self) -> DictChunks:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.response.close()

    def __iter__(self) -> Iterator[dict[str, Any]]:
        try:
            for data in self._events():
                if isinstance(data, Mapping) and data.get("error"):
                    raise _error_event(data["error"], self.response.request)
                yield data
        finally:
            self.response.close()

    def _events(self) -> Iterator[Any]:
        request = self.response.request
        try:
            for event in EventSource(self.response).iter_sse():  # type: ignore[arg-type]
                if event.data.startswith("[DONE]"):
                    return
                yield json.loads(event.data)
        except SSEError as exc:
            raise openai.APIError(
                f"The model server did not answer with an event stream ({exc})", request, body=None
            ) from exc
        except _TIMEOUTS as exc:
            raise openai.APITimeoutError(request=request) from exc
        except _BROKEN as exc:
            raise openai.APIConnectionError(request=request) from exc


def _error_event(error: Any, request: httpx.Request) -> openai.APIError:
    message = error.get("message") if isinstance(error, Mapping) else None
    if not message or not isinstance(message, str):
        message = NO_MESSAGE
    return openai.APIError(message=message, request=request, body=error)


class DictStreamResource:
    """An SDK resource (``client.chat.completions`` or ``client.completions``) whose
    streamed ``create`` yields dicts (``DictChunks``); everything else is the resource's."""

    def __init__(self, resource: Any) -> None:
        self._resource = resource

    def create(self, **kwargs: Any) -> Any:
        if not kwargs.get("stream"):
            return self._resource.create(**kwargs)
        try:
            raw = self._resource.with_raw_response.create(**kwargs)
        finally:
            responded = _responded.get()
            if responded is not None:
                responded.set()
        return DictChunks(raw.http_response)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._resource, name)
