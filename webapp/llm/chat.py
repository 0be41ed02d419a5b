"""Streaming one answer from vLLM: mode detection, history trimming, stats, error mapping."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, Literal

import httpx
import openai
from langchain_core.callbacks import BaseCallbackHandler

from webapp.llm import clients, server
from webapp.llm.budget import (
    clamp_max_tokens,
    estimate_tokens,
    max_prompt_tokens,
    prompt_budget,
    trim_history,
)
from webapp.llm.errors import (
    AnswerDeadline,
    BackendAuthError,
    BackendHTTPError,
    BackendTimeout,
    BackendUnreachable,
    ChatTemplateMissing,
    ContextOverflow,
    LLMError,
    ModelNotFound,
    StreamInterrupted,
)
from webapp.llm.prompts import COMPLETION_STOP, Turn, chat_messages, completion_prompt

Mode = Literal["chat", "completion"]


@dataclass(frozen=True)
class GenerationParams:
    """Sampling parameters chosen by the user (already within their UI bounds). Every field
    but ``max_tokens`` (clamped to the context first) is sent as is, under its own name, in
    both modes: a new sampling setting is one field here (see ``webapp/chat/options.py``)."""

    temperature: float = 0.7
    top_p: float = 1.0
    max_tokens: int = 512

    def sampling(self) -> dict[str, Any]:
        """The request's sampling arguments (all fields but ``max_tokens``)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "max_tokens"}


@dataclass(frozen=True)
class ChatRequest:
    """Everything needed to produce the next answer."""

    model: str
    system: str
    turns: tuple[Turn, ...]
    params: GenerationParams
    max_model_len: int | None = None


@dataclass
class GenerationStats:
    """What is shown under an answer. Token counts come from the server's usage chunk
    when it sends one (chat mode); otherwise streamed chunks are counted (vLLM sends
    one token per chunk) and ``usage_source`` says so."""

    model: str = ""
    mode: Mode | None = None
    prompt_tokens: int | None = None
    completion_tokens: int = 0
    ttft_s: float | None = None
    duration_s: float | None = None
    finish_reason: str | None = None
    dropped_turns: int = 0
    usage_source: Literal["server", "counted"] = "counted"

    @property
    def tokens_per_s(self) -> float | None:
        """Decode speed after the first token."""
        if self.ttft_s is None or self.duration_s is None or self.completion_tokens < 2:
            return None
        span = self.duration_s - self.ttft_s
        return (self.completion_tokens - 1) / span if span > 0 else None

    def as_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "mode": self.mode,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "ttft_s": self.ttft_s,
            "duration_s": self.duration_s,
            "tokens_per_s": self.tokens_per_s,
            "finish_reason": self.finish_reason,
            "dropped_turns": self.dropped_turns,
            "usage_source": self.usage_source,
        }


def map_error(exc: BaseException, partial_text: str = "") -> LLMError:
    """Translate an exception from openai/httpx/LangChain into our typed error.

    Once part of the answer arrived, any transport failure is a ``StreamInterrupted``
    that carries the partial text so nothing is lost.
    """
    if isinstance(exc, LLMError):
        exc.partial_text = exc.partial_text or partial_text
        return exc
    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        detail = _status_message(exc)
        low = detail.lower()
        if status == 400 and ("maximum context length" in low or "context length" in low):
            return ContextOverflow(detail, partial_text=partial_text)
        if status == 400 and "chat template" in low:
            return ChatTemplateMissing(status, detail, partial_text=partial_text)
        if status in (401, 403):
            return BackendAuthError(status, detail, partial_text=partial_text)
        if status == 404:
            return ModelNotFound(status, detail, partial_text=partial_text)
        return BackendHTTPError(status, detail, partial_text=partial_text)
    if partial_text and isinstance(exc, openai.APIError | httpx.TransportError):
        return StreamInterrupted(str(exc), partial_text=partial_text)
    if isinstance(exc, openai.APITimeoutError | httpx.TimeoutException):
        return BackendTimeout(str(exc), partial_text=partial_text)
    if isinstance(exc, openai.APIConnectionError | httpx.ConnectError):
        return BackendUnreachable(str(exc), partial_text=partial_text)
    if isinstance(exc, openai.APIError | httpx.TransportError):
        return StreamInterrupted(str(exc), partial_text=partial_text)
    return LLMError(f"{type(exc).__name__}: {exc}", partial_text=partial_text)


def _status_message(exc: openai.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, dict) and err.get("message"):
            return str(err["message"])
    return str(exc.message)


class _CompletionInfo(BaseCallbackHandler):
    """Captures finish_reason from VLLMOpenAI's streamed chunks (``stream()`` yields only text)."""

    run_inline = True

    def __init__(self) -> None:
        self.finish_reason: str | None = None

    def on_llm_new_token(self, token: str, *, chunk: Any = None, **kwargs: Any) -> None:
        info = getattr(chunk, "generation_info", None) or {}
        if info.get("finish_reason"):
            self.finish_reason = info["finish_reason"]


class Generation:
    """An answer being streamed: iterate for text deltas; ``stats`` fills in as it goes.

    ``close()`` (also called when the consumer stops iterating early, e.g. the user
    pressed stop) closes the HTTP stream, which makes vLLM abort the request.
    """

    def __init__(self, client: ChatClient, request: ChatRequest) -> None:
        self._client = client
        self._request = request
        self.stats = GenerationStats(model=request.model)
        self.text = ""
        #: a reasoning model's thinking, streamed before the answer (not part of ``text``)
        self.reasoning = ""
        self._outer: Iterator[str] | None = None

    def __iter__(self) -> Iterator[str]:
        if self._outer is None:
            self._outer = self._run()
        return self._outer

    def close(self) -> None:
        """Stop streaming now: closes the HTTP response so vLLM aborts the request."""
        if self._outer is not None:
            self._outer.close()  # type: ignore[attr-defined]

    def _run(self) -> Iterator[str]:
        client, req = self._client, self._request
        started = time.monotonic()
        mode = client.mode_for(req.model)
        try:
            try:
                yield from self._within_deadline(self._stream_mode(mode, started), started)
            except GeneratorExit:
                raise
            except Exception as exc:  # noqa: BLE001 - mapped to a typed error right here
                err = map_error(exc, self.text)
                base_model = isinstance(err, ChatTemplateMissing) and mode == "chat"
                if not base_model or client.forced_mode is not None or self.text:
                    raise err from exc
                # a base model: remember it and answer through /v1/completions instead
                client.remember_mode(req.model, "completion")
                yield from self._within_deadline(self._stream_mode("completion", started), started)
        except (GeneratorExit, LLMError):
            raise
        except Exception as exc:  # noqa: BLE001
            raise map_error(exc, self.text) from exc
        finally:
            self.stats.duration_s = time.monotonic() - started
        if self.stats.finish_reason is None:
            # the stream ended without a finish_reason: the connection was cut short
            raise StreamInterrupted(
                "stream ended before the answer finished", partial_text=self.text
            )

    def _within_deadline(self, inner: Iterator[str], started: float) -> Iterator[str]:
        """``inner``'s pieces until the client's ``answer_deadline_s`` has passed since
        ``started``; then ``AnswerDeadline`` (closing ``inner`` closes the HTTP stream, so
        vLLM stops generating)."""
        deadline = self._client.answer_deadline_s
        try:
            for piece in inner:
                yield piece
                if deadline is not None and time.monotonic() - started > deadline:
                    raise AnswerDeadline(deadline, partial_text=self.text)
        finally:
            inner.close()  # type: ignore[attr-defined]

    def _stream_mode(self, mode: Mode, started: float) -> Iterator[str]:
        self.stats.mode = mode
        req, client = self._request, self._client
        turns, dropped, prompt_tokens = client.fit(req, mode)
        self.stats.dropped_turns = dropped
        self.stats.prompt_tokens = prompt_tokens
        max_tokens = req.params.max_tokens
        if req.max_model_len:
            max_tokens = clamp_max_tokens(max_tokens, req.max_model_len)
        if mode == "chat":
            yield from self._stream_chat(turns, max_tokens, started)
        else:
            yield from self._stream_completion(turns, max_tokens, started)

    def _on_text(self, text: str, started: float) -> None:
        if self.stats.ttft_s is None:
            self.stats.ttft_s = time.monotonic() - started
        self.text += text

    def _stream_chat(self, turns: Sequence[Turn], max_tokens: int, started: float) -> Iterator[str]:
        req = self._request
        llm = self._client.llm("chat", req.model)
        msgs = chat_messages(req.system, turns)
        stream = llm.stream(msgs, max_tokens=max_tokens, **req.params.sampling())
        try:
            for chunk in stream:
                thinking = (chunk.additional_kwargs or {}).get("reasoning_content")
                if thinking:
                    self.reasoning += thinking
                    yield ""  # lets the consumer redraw while the model thinks
                text = chunk.content if isinstance(chunk.content, str) else ""
                if text:
                    self._on_text(text, started)
                    self.stats.completion_tokens += 1
                    yield text
                reason = (chunk.response_metadata or {}).get("finish_reason")
                if reason:
                    self.stats.finish_reason = reason
                usage = chunk.usage_metadata
                if usage and usage.get("output_tokens") is not None:
                    self.stats.completion_tokens = int(usage["output_tokens"])
                    self.stats.prompt_tokens = int(usage.get("input_tokens") or 0) or None
                    self.stats.usage_source = "server"
        finally:
            stream.close()

    def _stream_completion(
        self, turns: Sequence[Turn], max_tokens: int, started: float
    ) -> Iterator[str]:
        req = self._request
        llm = self._client.llm("completion", req.model)
        info = _CompletionInfo()
        stream = llm.stream(
            completion_prompt(req.system, turns),
            config={"callbacks": [info]},
            stop=COMPLETION_STOP,
            max_tokens=max_tokens,
            **req.params.sampling(),
        )
        with clients.responses_opened() as opened:
            try:
                for text in stream:
                    if text:
                        self._on_text(text, started)
                        self.stats.completion_tokens += 1
                        yield text
                    if info.finish_reason:
                        self.stats.finish_reason = info.finish_reason
            finally:
                stream.close()
                for response in opened:  # so that vLLM aborts now (see responses_opened)
                    response.close()
        if self.stats.finish_reason == "length":
            # cut by max_tokens: exactly that many were generated (chunks can hold several
            # tokens, e.g. the bytes of one character, so counting chunks undercounts)
            self.stats.completion_tokens = max_tokens
            self.stats.usage_source = "server"


@dataclass
class ChatClient:
    """Talks to one vLLM server. Thread-safe; one instance per (url, key, mode) per process."""

    base_url: str
    api_key: str = "EMPTY"
    mode: Literal["auto", "chat", "completion"] = "auto"
    timeout_s: float = 60.0
    answer_deadline_s: float | None = None  # total time one answer may stream
    configured_models: tuple[str, ...] = ()  # LLM_MODELS: served here, not in /v1/models
    _modes: dict[str, Mode] = field(default_factory=dict, repr=False)
    _llms: dict[tuple[Mode, str], Any] = field(default_factory=dict, repr=False)
    _no_tokenize: set[str] = field(default_factory=set, repr=False)  # models: estimate
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __repr__(self) -> str:  # never show the key
        return f"ChatClient(base_url={self.base_url!r}, mode={self.mode!r})"

    @property
    def forced_mode(self) -> Mode | None:
        return None if self.mode == "auto" else self.mode

    def mode_for(self, model: str) -> Mode:
        """Chat unless forced, or unless this model already refused chat (no template)."""
        return self.forced_mode or self._modes.get(model, "chat")

    def remember_mode(self, model: str, mode: Mode) -> None:
        with self._lock:
            self._modes[model] = mode

    def llm(self, mode: Mode, model: str) -> Any:
        """The cached LangChain client for this model and mode."""
        key = (mode, model)
        with self._lock:
            if key not in self._llms:
                factory = clients.chat_llm if mode == "chat" else clients.completion_llm
                self._llms[key] = factory(self.base_url, self.api_key, model, self.timeout_s)
            return self._llms[key]

    # --- server facts ---------------------------------------------------------------
    def status(self) -> server.BackendStatus:
        return server.health(self.base_url, self.api_key)

    def models(self, discovered: Sequence[str] = ()) -> list[server.ModelInfo]:
        """``/v1/models``, then LLM_MODELS and the pools' models (``FLEET_DISCOVERY``)."""
        extra = tuple(n for n in discovered if n not in self.configured_models)
        return server.served_models(self.base_url, self.configured_models + extra, self.api_key)

    def answers(self, model: str) -> bool:
        return server.answers(self.base_url, model, self.api_key)

    def requests_waiting(self) -> int | None:
        """The server's queue length now, or None when it cannot be read."""
        return server.requests_waiting(self.base_url, self.api_key)

    # --- fitting the history ----------------------------------------------------------
    def count_tokens(self, req: ChatRequest, mode: Mode, turns: Sequence[Turn]) -> int:
        """Prompt tokens as the server counts them (``/tokenize``), else an estimate."""
        if req.model not in self._no_tokenize:  # per model: behind a gateway, per pool
            try:
                if mode == "chat":
                    return server.count_tokens(
                        self.base_url,
                        req.model,
                        messages=chat_messages(req.system, turns),
                        api_key=self.api_key,
                    )
                return server.count_tokens(
                    self.base_url,
                    req.model,
                    prompt=completion_prompt(req.system, turns),
                    api_key=self.api_key,
                )
            except BackendHTTPError:
                self._no_tokenize.add(req.model)  # not vLLM (or an old one): estimate
        text = req.system + "".join(t.content for t in turns)
        return estimate_tokens(text) + 4 * len(turns)

    def fit(self, req: ChatRequest, mode: Mode) -> tuple[tuple[Turn, ...], int, int | None]:
        """Trim the oldest turns so prompt + max_tokens fits ``max_model_len``."""
        if not req.max_model_len:
            return req.turns, 0, None
        max_tokens = clamp_max_tokens(req.params.max_tokens, req.max_model_len)
        budget = prompt_budget(req.max_model_len, max_tokens)
        if max_prompt_tokens(req.system, req.turns) <= budget:
            # clearly fits: skip the /tokenize round trip (it delays the first token)
            return req.turns, 0, None
        trimmed = trim_history(req.turns, budget, lambda ts: self.count_tokens(req, mode, ts))
        return trimmed.turns, trimmed.dropped, trimmed.prompt_tokens

    def stream(self, request: ChatRequest) -> Generation:
        """Start streaming the next answer (lazily: nothing is sent until iterated)."""
        return Generation(self, request)
