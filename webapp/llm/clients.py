"""The LangChain clients, built in exactly one place.

``VLLMOpenAI`` comes from langchain-community, which is sunset upstream: it is
pinned in requirements.txt and only ``completion_llm`` names it, so swapping it
for ``langchain_openai.OpenAI`` (same /v1/completions protocol) is a one-line
change here.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import openai
from langchain_community.llms import VLLMOpenAI
from langchain_core.language_models import BaseLLM
from langchain_core.outputs import ChatGenerationChunk
from langchain_openai import ChatOpenAI

from webapp.llm.sse import DictStreamResource


def _timeout(read_s: float) -> httpx.Timeout:
    # connecting must fail fast (unreachable backend); reading may take long (slow first token)
    return httpx.Timeout(read_s, connect=min(5.0, read_s))


class VLLMChatOpenAI(ChatOpenAI):
    """ChatOpenAI that keeps vLLM's reasoning deltas.

    Reasoning models stream their thinking in ``delta.reasoning`` (older vLLM:
    ``reasoning_content``); ChatOpenAI drops both. They are copied into the
    chunk's ``additional_kwargs["reasoning_content"]``.
    """

    def _convert_chunk_to_generation_chunk(
        self, chunk: dict, default_chunk_class: type, base_generation_info: dict | None
    ) -> ChatGenerationChunk | None:
        out = super()._convert_chunk_to_generation_chunk(
            chunk, default_chunk_class, base_generation_info
        )
        choices = chunk.get("choices") or []
        delta = (choices[0].get("delta") or {}) if choices else {}
        reasoning = delta.get("reasoning") or delta.get("reasoning_content")
        if out is not None and reasoning:
            out.message.additional_kwargs["reasoning_content"] = reasoning
        return out


def chat_llm(base_url: str, api_key: str, model: str, timeout_s: float) -> ChatOpenAI:
    """ChatOpenAI against vLLM's /v1/chat/completions, streaming with a usage chunk; its
    streamed chunks arrive as dicts (``webapp.llm.sse``), not as the SDK's objects."""
    llm = VLLMChatOpenAI(
        model=model,
        base_url=f"{base_url}/v1",
        api_key=api_key,
        timeout=_timeout(timeout_s),
        max_retries=0,  # the user decides to retry; silent retries hide outages and double load
        stream_usage=True,
        streaming=True,
    )
    llm.client = DictStreamResource(llm.client)
    return llm


_opened = threading.local()


def _note_response(response: httpx.Response) -> None:
    responses = getattr(_opened, "responses", None)
    if responses is not None:
        responses.append(response)


@contextmanager
def responses_opened() -> Iterator[list[httpx.Response]]:
    """The HTTP responses the completion client opens in this thread meanwhile.

    VLLMOpenAI keeps its OpenAI stream in a reference cycle (through its retry wrapper), so
    closing the LangChain stream reaches the HTTP response only at the next full garbage
    collection: Stop did not make vLLM abort. Closing these responses does."""
    _opened.responses = []
    try:
        yield _opened.responses
    finally:
        _opened.responses = None


def completion_llm(base_url: str, api_key: str, model: str, timeout_s: float) -> BaseLLM:
    """VLLMOpenAI against vLLM's /v1/completions, for base models without a chat template;
    its streamed chunks arrive as dicts (``webapp.llm.sse``)."""
    return VLLMOpenAI(
        model_name=model,
        openai_api_base=f"{base_url}/v1",
        openai_api_key=api_key,
        request_timeout=_timeout(timeout_s),
        max_retries=0,
        streaming=True,
        # our own OpenAI client (same settings) whose HTTP client notes the responses it opens
        client=DictStreamResource(
            openai.OpenAI(
                base_url=f"{base_url}/v1",
                api_key=api_key,
                timeout=_timeout(timeout_s),
                max_retries=0,
                http_client=httpx.Client(
                    timeout=_timeout(timeout_s), event_hooks={"response": [_note_response]}
                ),
            ).completions
        ),
    )
