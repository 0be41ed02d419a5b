"""Scripted fake of vLLM's OpenAI-compatible HTTP server, for fault injection.

A real HTTP server (stdlib ``ThreadingHTTPServer``, one daemon thread per
connection) that speaks enough of vLLM's wire protocol for the real ``openai``
client and LangChain (``ChatOpenAI``, ``VLLMOpenAI``) to work against it, while
its behaviour is scripted: exact time to first token and token rate, mid-stream
socket drops, in-stream error events, HTTP error statuses, slow headers, hangs.

Wire details copied from vLLM 0.32.0 (the CPU build in ``.venv-vllm``):
error body ``{"error": {"message", "type", "param", "code"}}``, SSE chunks as
vLLM serialises them (``exclude_unset``), the usage chunk with ``choices: []``,
``data: [DONE]``, the chat-template and context-length messages, ``/tokenize``,
``/metrics`` names and labels (with ``http_requests_total{handler,method,status="2xx"}`` as
vLLM's prometheus-fastapi-instrumentator counts its ``/v1/`` routes).

Token counting (deterministic, documented so tests can compute budgets):
- generated tokens: one scripted piece = one token;
- ``/v1/completions`` prompt: ``len(prompt.split()) + 1`` (the +1 is a BOS token);
- ``/v1/chat/completions`` messages: ``3 + sum(4 + len(text.split()))`` over
  messages (4 tokens of role/turn markup per message, 3 for the assistant
  generation prompt); list-of-parts content counts its ``text`` parts.

Use in-process::

    with FakeOpenAI(model="fake-chat") as srv:
        srv.enqueue(Script(tokens=["Hel", "lo"], ttft_s=0.1, tokens_per_s=50))
        client = openai.OpenAI(base_url=srv.url + "/v1", api_key="x")

or out of process (e2e, bench): ``python -m tests.fakes.openai_server --port 0``
prints ``READY http://127.0.0.1:PORT``; drive it with :class:`RemoteFakeOpenAI`
(``/_control/*`` endpoints) or :func:`spawn_fake_openai`.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import pathlib
import select
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
import zlib
from collections import deque
from collections.abc import Iterator, Sequence
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

_REPO_ROOT = str(pathlib.Path(__file__).resolve().parents[2])
CHAT_TEMPLATE_MISSING = (
    "As of transformers v4.44, default chat template is no longer allowed, so you "
    "must provide a chat template if the tokenizer does not define one."
)
VLLM_VERSION = "0.32.0"
# vLLM's default bucket bounds for vllm:time_to_first_token_seconds.
TTFT_BUCKETS = (
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0,
    2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0,
)  # fmt: skip
_SENTENCE = (
    "The quick brown fox jumps over the lazy dog while seven wizards quietly "
    "judge boxing matches near a calm river under pale autumn light"
)
_WORDS = _SENTENCE.split()
_ERROR_TYPES = {
    400: "BadRequestError",
    401: "Unauthorized",
    404: "NotFoundError",
    422: "UnprocessableEntityError",
    500: "InternalServerError",
    501: "NotImplementedError",
    503: "ServiceUnavailableError",
}
_STREAM_ERROR_MESSAGE = (
    "EngineCore encountered an issue. See stack trace (above) for the root cause."
)


def default_tokens(n: int) -> list[str]:
    """Return the ``n`` deterministic pieces generated when a Script has no ``tokens``."""
    return [(" " if i else "") + _WORDS[i % len(_WORDS)] for i in range(n)]


@dataclasses.dataclass
class Script:
    """What the fake does for one generation request.

    tokens: exact streamed content pieces (one piece = one token); None -> default_tokens(n_tokens).
    reasoning: pieces sent first as ``delta.reasoning`` (chat) before any content.
    ttft_s: delay from (headers sent) to the first token.
    tokens_per_s: pacing after the first token; None = as fast as possible.
    drop_after: after N content chunks, close the socket without ``[DONE]`` (non-stream:
        send half the body, then close).
    error_after: after N content chunks, send vLLM's in-stream error event, then ``[DONE]``.
    status/error_message/error_type: answer this HTTP error (vLLM error JSON) instead.
    finish_reason: reported when generation ends naturally (default "stop"); max_tokens
        and stop sequences still apply first.
    delay_headers_s: wait this long before sending anything at all.
    hang: send nothing until the client goes away.
    hold: send nothing until the test calls ``release()`` (or the client goes away): the
        requests stay in flight for as long as a test needs, without timing.
    stream_interval: vLLM's ``--stream-interval N``: tokens per SSE chunk. As in vLLM
        (v1/engine/output_processor.py) the first token goes out alone, then a chunk each time
        N more tokens are generated (sent when the last of them is due), the rest at the end;
        a request's own ``stream_interval`` raises it, never lowers it. A chunk carries one
        kind (reasoning or content); an EOS "stop" still comes as its own empty chunk.
    """

    tokens: list[str] | None = None
    n_tokens: int = 16
    reasoning: list[str] | None = None
    ttft_s: float = 0.0
    tokens_per_s: float | None = None
    drop_after: int | None = None
    error_after: int | None = None
    status: int | None = None
    error_message: str | None = None
    error_type: str | None = None
    finish_reason: str = "stop"
    delay_headers_s: float = 0.0
    hang: bool = False
    hold: bool = False
    stream_interval: int = 1

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Script:
        """Build a Script from JSON fields; unknown keys raise ValueError."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise ValueError(f"unknown Script fields: {sorted(unknown)}")
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        """Return the Script as a JSON-able dict."""
        return dataclasses.asdict(self)


class _ClientGone(Exception):
    """The client closed the connection (or the server is stopping)."""


def _words(text: Any) -> int:
    if isinstance(text, str):
        return len(text.split())
    if isinstance(text, list):  # content parts
        return sum(_words(p.get("text", "")) for p in text if isinstance(p, dict))
    return 0


def count_chat_tokens(messages: Sequence[dict[str, Any]]) -> int:
    """Deterministic prompt-token count of chat messages (see module docstring)."""
    return 3 + sum(4 + _words(m.get("content")) for m in messages)


def count_prompt_tokens(prompt: Any) -> int:
    """Deterministic prompt-token count of a completions prompt (str or token-id list)."""
    if isinstance(prompt, list) and all(isinstance(t, int) for t in prompt):
        return len(prompt)
    return _words(prompt if isinstance(prompt, str) else str(prompt)) + 1


def _fake_ids(text: str, count: int) -> list[int]:
    ids = [1] + [zlib.crc32(w.encode()) % 32000 + 2 for w in text.split()]
    return (ids + [0] * count)[:count]


def error_body(status: int, message: str, err_type: str | None = None, param: str | None = None):
    """vLLM's current error JSON: ``{"error": {"message", "type", "param", "code"}}``."""
    if err_type is None:
        err_type = _ERROR_TYPES.get(status) or HTTPStatus(status).phrase.replace(" ", "") + "Error"
    return {"error": {"message": message, "type": err_type, "param": param, "code": status}}


def context_overflow_message(
    max_model_len: int, prompt_tokens: int, max_tokens: int | None, style: str = "current"
) -> str:
    """vLLM's context-length error text.

    style "current" = vLLM 0.32 (renderers/params.py, tokenisation is truncated at
    max_input+1 so long prompts report "at least"); "v0.11" = the
    "'max_tokens' or 'max_completion_tokens' is too large" wording of ~0.9-0.19;
    "legacy" = <= 0.8 "(P in the messages, K in the completion)".
    """
    if style == "legacy":
        k = max_tokens or 0
        return (
            f"This model's maximum context length is {max_model_len} tokens. However, you "
            f"requested {prompt_tokens + k} tokens ({prompt_tokens} in the messages, {k} in "
            f"the completion). Please reduce the length of the messages or completion."
        )
    if style == "v0.11" and max_tokens:
        return (
            f"'max_tokens' or 'max_completion_tokens' is too large: {max_tokens}. This model's "
            f"maximum context length is {max_model_len} tokens and your request has "
            f"{prompt_tokens} input tokens ({max_tokens} > {max_model_len} - {prompt_tokens})."
        )
    if style == "v0.11":
        return (
            f"This model's maximum context length is {max_model_len} tokens. However, your "
            f"request has {prompt_tokens} input tokens. Please reduce the length of the input "
            f"messages."
        )
    max_input = max_model_len - (max_tokens or 0)
    shown = min(prompt_tokens, max_input + 1)
    qualifier = "at least " if shown == max_input + 1 else ""
    return (
        f"This model's maximum context length is {max_model_len} tokens. However, your "
        f"prompt contains {qualifier}{shown} input tokens, which exceeds this limit even "
        f"without any output tokens. Please reduce the length of the input prompt."
    )


@dataclasses.dataclass
class _Plan:
    """The fully decided output of one generation request."""

    events: list[tuple[str, str]]  # (kind "reasoning"|"content", text), one per token
    finish_reason: str
    stop_reason: str | None
    prompt_tokens: list[int]  # one entry per choice (completions may batch prompts)
    generated: int  # completion tokens per choice (includes tokens of a cut stop string)


def _plan(script: Script, max_tokens: int | None, stop: list[str], prompts: list[int]) -> _Plan:
    reasoning = [("reasoning", t) for t in (script.reasoning or [])]
    pieces = script.tokens if script.tokens is not None else default_tokens(script.n_tokens)
    content = [("content", t) for t in pieces]
    finish, stop_reason = script.finish_reason, None
    consumed = len(content)
    # Stop strings end the answer where they first appear. Like vLLM (which holds back a
    # possible stop prefix), no character of the stop string is ever emitted: pieces are
    # clipped to the text before it, even when the stop string spans several pieces.
    if stop:
        full, cut_at = "", None
        for idx, (_, piece) in enumerate(content):
            full += piece
            hits = [(full.find(s), s) for s in stop if s and s in full]
            if hits:
                (cut_at, stop_reason), consumed, finish = min(hits), idx + 1, "stop"
                break
        if cut_at is not None:
            clipped, pos = [], 0
            for kind, piece in content[:consumed]:
                keep = piece[: max(0, cut_at - pos)]
                pos += len(piece)
                if keep:
                    clipped.append((kind, keep))
            content = clipped
    events = reasoning + content
    generated = len(reasoning) + consumed
    if max_tokens is not None and generated > max_tokens:
        events, finish, stop_reason = events[:max_tokens], "length", None
        generated = max_tokens
    return _Plan(events, finish, stop_reason, prompts, generated)


def _interval(script: Script, body: dict[str, Any]) -> int:
    """Tokens per chunk: the script's (the server's --stream-interval), raised by the request's
    own ``stream_interval`` like vLLM does."""
    asked = body.get("stream_interval")
    asked = asked if isinstance(asked, int) and not isinstance(asked, bool) else 1
    return max(1, script.stream_interval, asked)


def _chunks(events: list[tuple[str, str]], interval: int) -> Iterator[tuple[int, int, str, str]]:
    """``(first, end, kind, text)`` per SSE chunk: events[first:end] joined. The first token
    goes alone, then ``interval`` tokens per chunk; a change of kind starts a new chunk."""
    i = 0
    while i < len(events):
        kind = events[i][0]
        j = i + 1
        while i > 0 and j < len(events) and j - i < interval and events[j][0] == kind:
            j += 1
        yield i, j, kind, "".join(t for _, t in events[i:j])
        i = j


class _State:
    """Everything shared between handler threads; guarded by ``lock``."""

    def __init__(self, models: list[str], max_model_len: int, chat_template: bool):
        self.lock = threading.Condition()
        self.stopping = threading.Event()
        self.models = list(models)
        # what GET /v1/models lists (None: every model); a gateway lists its default pool's
        self.listed_models: list[str] | None = None
        self.max_model_len = max_model_len
        self.chat_template = chat_template
        self.api_key: str | None = None
        self.max_num_seqs: int | None = None
        self.overflow_style = "current"
        self.health_status = 200
        # GET /health and /v1/models answer nothing until release(): a slow server's checks
        self.hold_facts = False
        self.metrics_override: dict[str, float] = {}
        # /metrics answers this status, or this text instead of the gauges (a proxy, garbage)
        self.metrics_status = 200
        self.metrics_text: str | None = None
        self.kv_cache_tokens = 8 * max_model_len
        self.released = threading.Event()  # held requests go on once set (release())
        # Live state: describes requests being served right now, so reset() keeps it.
        self.in_flight = 0
        self.peak_in_flight = 0  # most requests in flight at once since the last reset
        self.waiting = 0
        self.running: dict[int, list[int]] = {}  # id -> [prompt_tokens, generated]
        self.reset()

    def reset(self) -> None:
        """Forget history, counters and scripts (not the requests in flight)."""
        with self.lock:
            self.default_script = Script()
            self.queue: deque[Script] = deque()
            self.requests: list[dict[str, Any]] = []
            self.disconnects = 0
            self.drops = 0
            self.prompt_tokens_total = 0
            self.generation_tokens_total = 0
            self.ttfts: list[float] = []
            self.success: dict[str, int] = {}
            # (handler, method, status group) -> count, as vLLM's prometheus-fastapi-instrumentator
            self.http: dict[tuple[str, str, str], int] = {}
            self.peak_in_flight = self.in_flight
            self.released.clear()

    def next_script(self) -> Script:
        with self.lock:
            return self.queue.popleft() if self.queue else self.default_script


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    request_queue_size = 128

    def __init__(self, addr: tuple[str, int], state: _State):
        self.state = state
        self.conns: set[socket.socket] = set()
        self.conns_lock = threading.Lock()
        super().__init__(addr, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Clients that reset idle keep-alive connections are normal here: stay quiet."""
        if isinstance(sys.exc_info()[1], OSError):
            return
        super().handle_error(request, client_address)

    def close_all(self) -> None:
        with self.conns_lock:
            for conn in list(self.conns):
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        """Keep test output quiet."""

    def setup(self) -> None:
        super().setup()
        with self.server.conns_lock:
            self.server.conns.add(self.connection)

    def finish(self) -> None:
        with self.server.conns_lock:
            self.server.conns.discard(self.connection)
        with contextlib.suppress(OSError):
            super().finish()

    # ---- plumbing -------------------------------------------------------------------------

    @property
    def st(self) -> _State:
        return self.server.state

    def do_GET(self) -> None:  # noqa: N802 - stdlib naming
        self._dispatch("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._dispatch("POST")

    def send_response(self, code: int, message: str | None = None) -> None:
        self._status = code  # counted per handler in http_requests_total
        super().send_response(code, message)

    def _send_json(self, status: int, obj: Any, headers: dict[str, str] | None = None) -> None:
        body = json.dumps(obj).encode()
        self._send_raw(status, body, "application/json", headers)

    def _send_raw(self, status: int, body: bytes, ctype: str, headers=None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def _send_error(self, status: int, message: str, err_type=None, param=None) -> None:
        self._send_json(status, error_body(status, message, err_type, param))

    def _client_gone(self) -> bool:
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
            if not readable:
                return False
            return self.connection.recv(1, socket.MSG_PEEK) == b""
        except (OSError, ValueError):
            return True

    def _wait_until(self, deadline: float) -> None:
        """Sleep until ``deadline`` (monotonic); raise _ClientGone as soon as the client leaves."""
        while True:
            if self.st.stopping.is_set():
                raise _ClientGone
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            try:
                readable, _, _ = select.select([self.connection], [], [], min(remaining, 0.25))
            except (OSError, ValueError) as exc:
                raise _ClientGone from exc
            if readable:
                if self._client_gone():
                    raise _ClientGone
                # Pipelined bytes, not EOF: just sleep the rest in small steps.
                self.st.stopping.wait(min(remaining, 0.05))

    def _write_chunk(self, data: bytes) -> None:
        try:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        except OSError as exc:
            raise _ClientGone from exc

    def _sse(self, obj: Any) -> None:
        payload = obj if isinstance(obj, str) else json.dumps(obj, separators=(",", ":"))
        self._write_chunk(f"data: {payload}\n\n".encode())

    def _drop(self) -> None:
        """Abruptly close the socket: no terminating chunk, no [DONE]."""
        self.close_connection = True
        with self.st.lock:
            self.st.drops += 1
        with contextlib.suppress(OSError):
            self.wfile.flush()
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    def _read_json(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if not raw:
            return None
        return json.loads(raw)

    def _record(self, body: Any) -> dict[str, Any]:
        headers = {
            k.lower(): ("<redacted>" if k.lower() == "authorization" else v)
            for k, v in self.headers.items()
        }
        rec = {
            "method": self.command,
            "path": self.path,
            "body": body,
            "headers": headers,
            "t": time.time(),
        }
        with self.st.lock:
            self.st.requests.append(rec)
        return rec

    # ---- routing --------------------------------------------------------------------------

    def _dispatch(self, method: str) -> None:
        path = self.path.split("?", 1)[0]
        try:
            body = self._read_json() if method == "POST" else None
        except (ValueError, UnicodeDecodeError) as exc:
            self._send_error(400, f"Invalid JSON body: {exc}")
            return
        if path.startswith("/_control/"):
            self._control(method, path, body)
            return
        rec = self._record(body)
        key = self.st.api_key
        if path.startswith("/v1/") and key and self.headers.get("Authorization") != f"Bearer {key}":
            self._send_json(401, {"error": "Unauthorized"})
            return
        routes = {
            ("GET", "/health"): self._health,
            ("GET", "/metrics"): self._metrics,
            ("GET", "/version"): lambda: self._send_json(200, {"version": VLLM_VERSION}),
            ("GET", "/v1/models"): self._models,
            ("POST", "/tokenize"): lambda: self._tokenize(body),
            ("POST", "/v1/chat/completions"): lambda: self._generate(body, chat=True, rec=rec),
            ("POST", "/v1/completions"): lambda: self._generate(body, chat=False, rec=rec),
        }
        handler = routes.get((method, path))
        if handler is None:
            self._send_json(404, {"detail": "Not Found"})
            return
        self._status = 0
        try:
            handler()
        except _ClientGone:
            self.close_connection = True
        except (OSError, ValueError):
            self.close_connection = True
        if path.startswith("/v1/") and self._status:
            with self.st.lock:
                key3 = (path, method, f"{self._status // 100}xx")
                self.st.http[key3] = self.st.http.get(key3, 0) + 1

    def _hold_facts(self) -> None:
        """With ``hold_facts``, wait for ``release()`` (or the client to go away)."""
        while self.st.hold_facts and not self.st.released.is_set():
            self._wait_until(time.monotonic() + 0.05)

    def _health(self) -> None:
        self._hold_facts()
        self._send_raw(self.st.health_status, b"", "application/json")

    def _models(self) -> None:
        self._hold_facts()
        now = int(time.time())
        data = [
            {
                "id": m,
                "object": "model",
                "created": now,
                "owned_by": "vllm",
                "root": m,
                "parent": None,
                "max_model_len": self.st.max_model_len,
                "permission": [],
            }
            for m in (self.st.models if self.st.listed_models is None else self.st.listed_models)
        ]
        self._send_json(200, {"object": "list", "data": data})

    def _tokenize(self, body: Any) -> None:
        if not isinstance(body, dict):
            self._send_error(400, "Request body must be a JSON object")
            return
        model = body.get("model")
        if model and model not in self.st.models:
            self._send_error(404, f"The model `{model}` does not exist.", param="model")
            return
        if "messages" in body:
            if not self.st.chat_template:
                self._send_error(400, CHAT_TEMPLATE_MISSING)
                return
            count = count_chat_tokens(body["messages"])
            text = " ".join(str(m.get("content", "")) for m in body["messages"])
        else:
            count = count_prompt_tokens(body.get("prompt", ""))
            text = str(body.get("prompt", ""))
        self._send_json(
            200,
            {
                "count": count,
                "max_model_len": self.st.max_model_len,
                "tokens": _fake_ids(text, count),
                "token_strs": None,
            },
        )

    def _metrics(self) -> None:
        st = self.st
        if st.metrics_status != 200 or st.metrics_text is not None:
            text = st.metrics_text if st.metrics_text is not None else "unavailable"
            self._send_raw(st.metrics_status, text.encode(), "text/plain; charset=utf-8")
            return
        with st.lock:
            running = len(st.running)
            used = sum(p + g for p, g in st.running.values())
            gauges = {
                "vllm:num_requests_running": float(running),
                "vllm:num_requests_waiting": float(st.waiting),
                "vllm:kv_cache_usage_perc": min(1.0, used / max(1, st.kv_cache_tokens)),
            }
            gauges.update(st.metrics_override)
            counters = {
                "vllm:prompt_tokens": st.prompt_tokens_total,
                "vllm:generation_tokens": st.generation_tokens_total,
            }
            ttfts = list(st.ttfts)
            success = dict(st.success)
            http = dict(st.http)
        lab = f'engine="0",model_name="{st.models[0] if st.models else ""}"'
        out: list[str] = []
        for name, value in gauges.items():
            out += [f"# TYPE {name} gauge", f"{name}{{{lab}}} {float(value)}"]
        for name, value in counters.items():
            out += [f"# TYPE {name} counter", f"{name}_total{{{lab}}} {float(value)}"]
        out.append("# TYPE vllm:request_success counter")
        for reason in ("stop", "length", "abort", "error"):
            out.append(
                f'vllm:request_success_total{{{lab},finished_reason="{reason}"}} '
                f"{float(success.get(reason, 0))}"
            )
        out.append("# TYPE http_requests counter")
        for (handler, method, group), n in sorted(http.items()):
            out.append(
                f'http_requests_total{{handler="{handler}",method="{method}",status="{group}"}} '
                f"{float(n)}"
            )
        name = "vllm:time_to_first_token_seconds"
        out.append(f"# TYPE {name} histogram")
        for le in TTFT_BUCKETS:
            out.append(f'{name}_bucket{{{lab},le="{le}"}} {float(sum(t <= le for t in ttfts))}')
        out.append(f'{name}_bucket{{{lab},le="+Inf"}} {float(len(ttfts))}')
        out.append(f"{name}_count{{{lab}}} {float(len(ttfts))}")
        out.append(f"{name}_sum{{{lab}}} {float(sum(ttfts))}")
        body = ("\n".join(out) + "\n").encode()
        self._send_raw(200, body, "text/plain; version=0.0.4; charset=utf-8")

    def _control(self, method: str, path: str, body: Any) -> None:
        st = self.st
        try:
            if (method, path) == ("POST", "/_control/script"):
                script = Script.from_dict(body or {})
                with st.lock:
                    st.default_script = script
            elif (method, path) == ("POST", "/_control/enqueue"):
                items = (
                    body.get("scripts") if isinstance(body, dict) and "scripts" in body else [body]
                )
                scripts = [Script.from_dict(i or {}) for i in items]
                with st.lock:
                    st.queue.extend(scripts)
            elif (method, path) == ("POST", "/_control/reset"):
                st.reset()
            elif (method, path) == ("POST", "/_control/release"):
                st.released.set()
            elif (method, path) == ("POST", "/_control/config"):
                _apply_config(st, body or {})
            elif (method, path) == ("GET", "/_control/requests"):
                with st.lock:
                    self._send_json(200, {"requests": list(st.requests)})
                return
            elif (method, path) == ("GET", "/_control/stats"):
                self._send_json(200, _stats(st))
                return
            else:
                self._send_json(404, {"detail": "Not Found"})
                return
        except (TypeError, ValueError, AttributeError) as exc:
            self._send_json(400, {"detail": str(exc)})
            return
        self._send_json(200, {"ok": True})

    # ---- generation -----------------------------------------------------------------------

    def _validate(self, body: Any, chat: bool) -> tuple[list[int], int | None] | None:
        """Return (prompt token counts, max_tokens) or send vLLM's error and return None."""
        st = self.st
        if not isinstance(body, dict):
            self._send_error(400, "Request body must be a JSON object")
            return None
        model = body.get("model")
        if model and model not in st.models:
            self._send_error(
                404,
                f"The model `{model}` does not exist. Valid aliases: {', '.join(st.models)}.",
                param="model",
            )
            return None
        if chat:
            if not st.chat_template:
                self._send_error(400, CHAT_TEMPLATE_MISSING)
                return None
            prompts = [count_chat_tokens(body.get("messages") or [])]
            max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
            param = "max_completion_tokens" if "max_completion_tokens" in body else "max_tokens"
        else:
            prompt = body.get("prompt", "")
            many = isinstance(prompt, list) and prompt and not isinstance(prompt[0], int)
            prompts = [count_prompt_tokens(p) for p in (prompt if many else [prompt])]
            max_tokens = body.get("max_tokens", 16)  # vLLM's completions default
            param = "max_tokens"
        if max_tokens is not None and max_tokens > st.max_model_len:
            self._send_error(
                400,
                f"{param}={max_tokens} cannot be greater than max_model_len={st.max_model_len}. "
                f"Please request fewer output tokens.",
                param=param,
            )
            return None
        for p in prompts:
            if p + (max_tokens or 0) > st.max_model_len:
                msg = context_overflow_message(st.max_model_len, p, max_tokens, st.overflow_style)
                self._send_error(400, msg, param="input_tokens")
                return None
        if max_tokens is None:
            max_tokens = st.max_model_len - max(prompts)
        return prompts, max_tokens

    def _generate(self, body: Any, chat: bool, rec: dict[str, Any]) -> None:
        st = self.st
        script = st.next_script()
        rec["script"] = script.to_dict()
        t0 = time.monotonic()
        key = id(rec)
        with st.lock:
            st.in_flight += 1
            st.peak_in_flight = max(st.peak_in_flight, st.in_flight)
        try:
            try:
                self._wait_until(t0 + script.delay_headers_s)
                while script.hold and not st.released.is_set():
                    self._wait_until(time.monotonic() + 0.05)
                if script.hang:
                    self._wait_until(float("inf"))
            except _ClientGone:
                self._count_gone()
                raise
            if script.status is not None:
                msg = script.error_message or HTTPStatus(script.status).phrase
                self._send_error(script.status, msg, script.error_type)
                return
            checked = self._validate(body, chat)
            if checked is None:
                return
            prompts, max_tokens = checked
            stop = body.get("stop") or []
            plan = _plan(
                script, max_tokens, [stop] if isinstance(stop, str) else list(stop), prompts
            )
            self._admit(key, sum(prompts))
            try:
                if body.get("stream"):
                    self._stream(body, chat, script, plan, rec, key)
                else:
                    self._complete(body, chat, script, plan, rec, key)
            finally:
                with st.lock:
                    st.running.pop(key, None)
                    st.lock.notify_all()
        finally:
            with st.lock:
                st.in_flight -= 1

    def _count_gone(self) -> None:
        with self.st.lock:
            self.st.disconnects += 1
            self.st.success["abort"] = self.st.success.get("abort", 0) + 1

    def _admit(self, key: int, prompt_tokens: int) -> None:
        """Wait for a batch slot when max_num_seqs is set (counted as waiting)."""
        st = self.st
        with st.lock:
            st.waiting += 1
        try:
            while True:
                with st.lock:
                    if st.max_num_seqs is None or len(st.running) < st.max_num_seqs:
                        st.running[key] = [prompt_tokens, 0]
                        st.prompt_tokens_total += prompt_tokens
                        return
                    st.lock.wait(0.05)
                if self._client_gone() or st.stopping.is_set():
                    self._count_gone()
                    raise _ClientGone
        finally:
            with st.lock:
                st.waiting -= 1

    def _tick(self, key: int, first: bool, t_start: float) -> None:
        with self.st.lock:
            if key in self.st.running:
                self.st.running[key][1] += 1
            self.st.generation_tokens_total += 1
            if first:
                self.st.ttfts.append(time.monotonic() - t_start)

    def _deadline(self, script: Script, t_first: float, i: int) -> float:
        if not script.tokens_per_s:
            return t_first
        return t_first + i / script.tokens_per_s

    def _finish_ok(self, reason: str) -> None:
        with self.st.lock:
            self.st.success[reason] = self.st.success.get(reason, 0) + 1

    def _usage(self, plan: _Plan) -> dict[str, int]:
        p = sum(plan.prompt_tokens)
        c = plan.generated * len(plan.prompt_tokens)
        return {"prompt_tokens": p, "total_tokens": p + c, "completion_tokens": c}

    def _stream(self, body, chat, script: Script, plan: _Plan, rec, key) -> None:
        rid = f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex}"
        created = int(time.time())
        model = body.get("model") or self.st.models[0]
        obj = "chat.completion.chunk" if chat else "text_completion"
        head = {"id": rid, "object": obj, "created": created, "model": model}
        times: list[float] = []
        rec["chunk_times"] = times
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        t_start = time.monotonic()
        t_first = t_start + script.ttft_s
        n = len(plan.events)
        try:
            self._wait_until(t_first)
            if chat:
                role = {"role": "assistant", "content": ""}
                self._sse({**head, "choices": [self._cchoice(0, role, None)]})
            for i, j, kind, text in _chunks(plan.events, _interval(script, body)):
                self._wait_until(self._deadline(script, t_first, j - 1))
                if script.drop_after is not None and i >= script.drop_after:
                    self._drop()
                    return
                if script.error_after is not None and i >= script.error_after:
                    self._stream_error()
                    return
                # vLLM puts "length" on the chunk carrying the last token; an EOS ("stop")
                # arrives as a separate empty chunk.
                last_len = j == n and plan.finish_reason == "length"
                fin = plan.finish_reason if last_len else None
                self._sse({**head, "choices": self._choices(chat, kind, text, fin, None, plan)})
                times.append(time.time())
                for k in range(i, j):
                    self._tick(key, k == 0, t_start)
            if plan.finish_reason != "length" or n == 0:
                self._wait_until(self._deadline(script, t_first, n))
                choices = self._choices(
                    chat, "content", "", plan.finish_reason, plan.stop_reason, plan
                )
                self._sse({**head, "choices": choices})
            opts = body.get("stream_options") or {}
            if opts.get("include_usage"):
                self._sse({**head, "choices": [], "usage": self._usage(plan)})
            self._sse("[DONE]")
            self._write_chunk(b"")
        except _ClientGone:
            self._count_gone()
            raise
        self._finish_ok(plan.finish_reason)

    def _stream_error(self) -> None:
        self._sse(error_body(500, _STREAM_ERROR_MESSAGE))
        self._sse("[DONE]")
        self._write_chunk(b"")
        self._finish_ok("error")

    @staticmethod
    def _cchoice(i: int, delta: dict, fin: str | None, stop_reason: Any = None) -> dict:
        c = {"index": i, "delta": delta, "logprobs": None, "finish_reason": fin}
        if fin is not None:
            c["stop_reason"] = stop_reason
        return c

    def _choices(self, chat, kind, text, fin, stop_reason, plan: _Plan) -> list[dict]:
        if chat:
            return [self._cchoice(0, {kind: text}, fin, stop_reason)]
        return [
            {
                "index": i,
                "text": text,
                "logprobs": None,
                "finish_reason": fin,
                "stop_reason": stop_reason,
            }
            for i in range(len(plan.prompt_tokens))
        ]

    def _complete(self, body, chat, script: Script, plan: _Plan, rec, key) -> None:
        t_start = time.monotonic()
        t_first = t_start + script.ttft_s
        n = len(plan.events)
        try:
            self._wait_until(t_first)
            for i in range(n):
                self._tick(key, i == 0, t_start)
            self._wait_until(self._deadline(script, t_first, max(0, n - 1)))
        except _ClientGone:
            self._count_gone()
            raise
        content = "".join(t for k, t in plan.events if k == "content")
        reasoning = "".join(t for k, t in plan.events if k == "reasoning") or None
        model = body.get("model") or self.st.models[0]
        base = {"created": int(time.time()), "model": model, "usage": self._usage(plan)}
        if chat:
            msg = {
                "role": "assistant",
                "content": content,
                "tool_calls": [],
                "reasoning": reasoning,
            }
            choice = {"index": 0, "message": msg, "logprobs": None,
                      "finish_reason": plan.finish_reason, "stop_reason": plan.stop_reason}  # fmt: skip
            resp = {"id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion", **base,
                    "choices": [choice]}  # fmt: skip
        else:
            choices = [
                {
                    "index": i,
                    "text": content,
                    "logprobs": None,
                    "finish_reason": plan.finish_reason,
                    "stop_reason": plan.stop_reason,
                }  # fmt: skip
                for i in range(len(plan.prompt_tokens))
            ]
            resp = {"id": f"cmpl-{uuid.uuid4().hex}", "object": "text_completion", **base,
                    "choices": choices}  # fmt: skip
        data = json.dumps(resp).encode()
        if script.drop_after is not None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data[: len(data) // 2])
            self._drop()
            return
        if script.error_after is not None:
            self._send_error(500, _STREAM_ERROR_MESSAGE)
            self._finish_ok("error")
            return
        self._send_json(200, resp)
        self._finish_ok(plan.finish_reason)


def _apply_config(st: _State, cfg: dict[str, Any]) -> None:
    allowed = {"models", "listed_models", "max_model_len", "chat_template", "health_status",
               "api_key", "max_num_seqs", "overflow_style", "metrics_override",
               "kv_cache_tokens", "metrics_status", "metrics_text", "hold_facts"}  # fmt: skip
    unknown = set(cfg) - allowed
    if unknown:
        raise ValueError(f"unknown config keys: {sorted(unknown)}")
    if "overflow_style" in cfg and cfg["overflow_style"] not in ("current", "v0.11", "legacy"):
        raise ValueError("overflow_style must be current, v0.11 or legacy")
    with st.lock:
        for k, v in cfg.items():
            listing = k == "models" or (k == "listed_models" and v is not None)
            setattr(st, k, list(v) if listing else v)
        st.lock.notify_all()


def _stats(st: _State) -> dict[str, Any]:
    with st.lock:
        return {
            "disconnects": st.disconnects,
            "drops": st.drops,
            "in_flight": st.in_flight,
            "peak_in_flight": st.peak_in_flight,
            "running": len(st.running),
            "waiting": st.waiting,
            "requests": len(st.requests),
            "queued_scripts": len(st.queue),
        }


class FakeOpenAI:
    """In-process scripted vLLM fake; a context manager that serves on 127.0.0.1.

    ``model`` may be one name or a list (all listed by /v1/models; the first is the
    one /metrics labels and responses default to). ``srv.url`` has no ``/v1``.
    """

    def __init__(
        self,
        model: str | Sequence[str] = "fake-chat",
        max_model_len: int = 2048,
        chat_template: bool = True,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        api_key: str | None = None,
        max_num_seqs: int | None = None,
        overflow_style: str = "current",
    ):
        models = [model] if isinstance(model, str) else list(model)
        self._state = _State(models, max_model_len, chat_template)
        _apply_config(
            self._state,
            {"api_key": api_key, "max_num_seqs": max_num_seqs, "overflow_style": overflow_style},
        )
        self._addr = (host, port)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # lifecycle
    def start(self) -> FakeOpenAI:
        """Bind and serve in a daemon thread."""
        self._state.stopping.clear()
        self._server = _Server(self._addr, self._state)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, abort open streams and close every connection."""
        if self._server is None:
            return
        self._state.stopping.set()
        self._server.shutdown()
        self._server.close_all()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None

    def __enter__(self) -> FakeOpenAI:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # scripting
    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:PORT`` (append ``/v1`` for the openai client)."""
        if self._server is None:
            raise RuntimeError("FakeOpenAI is not running")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def set_script(self, script: Script) -> None:
        """Set the default script (used when the queue is empty)."""
        with self._state.lock:
            self._state.default_script = script

    def enqueue(self, *scripts: Script) -> None:
        """Queue scripts consumed one per generation request, before the default."""
        with self._state.lock:
            self._state.queue.extend(scripts)

    def configure(self, **cfg: Any) -> None:
        """Change models, listed_models (what /v1/models lists; None: all), max_model_len,
        chat_template, health_status, api_key, max_num_seqs, overflow_style, metrics_override,
        kv_cache_tokens, metrics_status or metrics_text (served as /metrics instead of the
        gauges), hold_facts (GET /health and /v1/models answer nothing until ``release()``)
        at runtime."""
        _apply_config(self._state, cfg)

    def reset(self) -> None:
        """Forget requests, counters and queued scripts; default script back to Script()."""
        self._state.reset()

    def release(self) -> None:
        """Let every held request (``Script.hold``, ``hold_facts``) go on, and the later ones
        not wait."""
        self._state.released.set()

    @property
    def requests(self) -> list[dict[str, Any]]:
        """Recorded requests (not /_control): method, path, body, headers (names lower-cased,
        authorization value redacted), t (epoch), script (generation requests), chunk_times
        (epoch send time of each token chunk, streams only)."""
        with self._state.lock:
            return list(self._state.requests)

    @property
    def disconnects(self) -> int:
        """Requests whose client went away before the response was complete."""
        with self._state.lock:
            return self._state.disconnects

    def wait_for_disconnects(self, n: int = 1, timeout_s: float = 10.0) -> int:
        """``disconnects`` once it reaches ``n`` (or ``timeout_s`` has passed)."""
        deadline = time.monotonic() + timeout_s
        while self.disconnects < n and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.disconnects

    def stats(self) -> dict[str, Any]:
        """Same dict as GET /_control/stats."""
        return _stats(self._state)


class RemoteFakeOpenAI:
    """Drive a fake running in another process through its /_control endpoints."""

    def __init__(self, url: str, timeout: float = 10.0):
        self.url = url.rstrip("/")
        self.timeout = timeout

    def _call(self, method: str, path: str, payload: Any = None) -> Any:
        data = None if payload is None else json.dumps(payload).encode()
        req = urllib.request.Request(  # noqa: S310 - local http only
            self.url + path, data=data, method=method, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(req, timeout=self.timeout) as resp:  # noqa: S310
            return json.loads(resp.read() or b"null")

    def set_script(self, script: Script) -> None:
        """Set the default script."""
        self._call("POST", "/_control/script", script.to_dict())

    def enqueue(self, *scripts: Script) -> None:
        """Queue scripts for the next generation requests."""
        self._call("POST", "/_control/enqueue", {"scripts": [s.to_dict() for s in scripts]})

    def configure(self, **cfg: Any) -> None:
        """See FakeOpenAI.configure."""
        self._call("POST", "/_control/config", cfg)

    def reset(self) -> None:
        """Forget requests, counters and queued scripts."""
        self._call("POST", "/_control/reset", {})

    def release(self) -> None:
        """See FakeOpenAI.release."""
        self._call("POST", "/_control/release", {})

    @property
    def requests(self) -> list[dict[str, Any]]:
        """Recorded requests."""
        return self._call("GET", "/_control/requests")["requests"]

    @property
    def disconnects(self) -> int:
        """Requests whose client went away early."""
        return self.stats()["disconnects"]

    def stats(self) -> dict[str, Any]:
        """disconnects, drops, in_flight, peak_in_flight, running, waiting, requests,
        queued_scripts."""
        return self._call("GET", "/_control/stats")


@contextlib.contextmanager
def spawn_fake_openai(*cli_args: str, cwd: str | None = None) -> Iterator[RemoteFakeOpenAI]:
    """Run ``python -m tests.fakes.openai_server --port 0 *cli_args`` in a subprocess.

    Yields a RemoteFakeOpenAI once the child printed READY; terminates it on exit.
    """
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.fakes.openai_server", "--port", "0", *cli_args],
        stdout=subprocess.PIPE,
        text=True,
        cwd=cwd or _REPO_ROOT,
    )
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        if not line.startswith("READY "):
            raise RuntimeError(f"fake OpenAI server did not start: {line!r}")
        yield RemoteFakeOpenAI(line.split()[1])
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout:
            proc.stdout.close()


def main(argv: list[str] | None = None) -> int:
    """CLI: serve until SIGTERM/SIGINT, printing ``READY <url>`` once listening."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--model", action="append", help="served model name (repeatable)")
    ap.add_argument("--max-model-len", type=int, default=2048)
    ap.add_argument("--no-chat-template", action="store_true", help="behave like a base model")
    ap.add_argument("--ttft", type=float, default=0.0, help="seconds to first token")
    ap.add_argument("--rate", type=float, default=None, help="tokens per second (default: max)")
    ap.add_argument("--tokens", type=int, default=16, help="tokens per answer")
    ap.add_argument("--stream-interval", type=int, default=1, help="tokens per SSE chunk")
    ap.add_argument("--api-key", default=None)
    ap.add_argument("--max-num-seqs", type=int, default=None)
    args = ap.parse_args(argv)
    srv = FakeOpenAI(
        args.model or ["fake-chat"],
        args.max_model_len,
        not args.no_chat_template,
        host=args.host,
        port=args.port,
        api_key=args.api_key,
        max_num_seqs=args.max_num_seqs,
    )
    srv.set_script(
        Script(
            n_tokens=args.tokens,
            ttft_s=args.ttft,
            tokens_per_s=args.rate,
            stream_interval=args.stream_interval,
        )
    )
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    with srv:
        print(f"READY {srv.url}", flush=True)
        done.wait()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
