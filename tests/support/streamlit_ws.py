"""A Streamlit session over Streamlit's own websocket protocol, without a browser.

Each ``WsSession`` is a Python client of ``ws://HOST/_stcore/stream`` doing what the frontend
does (checked against Chromium's frames): ``GET /_stcore/health`` for the XSRF cookie,
connect with subprotocols ``["streamlit", <xsrf token>]`` and a same-origin ``Origin``,
send ``rerun_script`` (query string, page script hash, context info), read the
ForwardMsgs, and on "Enter" send a rerun whose widget states carry the chat input's
``chat_input_value`` with the prompt. The frontend also echoes the sidebar widgets'
values (system prompt, sliders, max tokens); they are keyed, so the app reads the same
values from session state either way. One asyncio loop can drive hundreds of sessions.

``headers`` go on the websocket's HTTP request, which is where ``st.context.headers`` come
from: e.g. the ``X-Forwarded-For`` a load balancer would add. Like a browser, the session sends
back every cookie the first request (``/_stcore/health``) set (``WsSession.cookies``): behind a
sticky proxy its affinity cookie pins the websocket to the replica that answered it.

What a question's page run showed: ``Answer.text`` (the answer markdown, the NATIVE markdown
in the new assistant chat message), ``WsSession.alerts`` (the bodies of the st.warning /
st.error / st.info elements of the last page run). Used by the flood test
(tests/chat/ui/test_chat_flood.py) and the concurrency benchmark (bench/ws_sessions.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass

XSRF_COOKIE = "_streamlit_xsrf"
#: what the browser sent in ``context_info`` (observed in Chromium's frames)
CONTEXT = {"timezone": "UTC", "timezone_offset": 0, "locale": "en-US", "color_scheme": "light"}
#: what the page shows in the answer bubble before the first token
PLACEHOLDER = "…"
#: the load balancer's own address, the last entry GKE's load balancer appends
LB_ADDRESS = "203.0.113.1"


def via_load_balancer(client: str, sent: str = "") -> dict[str, str]:
    """The ``X-Forwarded-For`` a request from ``client`` carries behind GKE's load balancer,
    which appends ``<client>, <its own address>`` to what the client ``sent`` itself."""
    return {"X-Forwarded-For": ", ".join(filter(None, [sent, client, LB_ADDRESS]))}


def nth_client(n: int) -> str:
    """A distinct client address per ``n`` (198.18.0.0/15, the range kept for benchmarks)."""
    return f"198.{18 + n // 65536 % 2}.{n // 256 % 256}.{n % 256}"


def now_ms() -> float:
    return time.time() * 1000


@dataclass
class Answer:
    """One question of one session: epoch ms (``origin`` 0, as ``bench.concurrency`` expects).

    ``first`` is when the answer first showed text (or ``first_marker``), ``last`` when it
    was complete (the ``expected`` text, or ``last_marker`` in it).
    """

    prompt: str
    expected: str
    first_marker: str = ""
    last_marker: str = ""
    enter: float | None = None
    first: float | None = None
    last: float | None = None
    done: float | None = None
    text: str = ""
    updates: int = 0  # answer-markdown deltas received
    error: str | None = None
    origin: float = 0.0

    def record(self) -> dict:
        """The dict ``concurrency.level_row`` / ``spread`` read."""
        return {
            "enter": self.enter, "first": self.first, "last": self.last, "origin": self.origin,
            "error": self.error, "prompt": self.prompt, "updates": self.updates,
        }  # fmt: skip

    def _seen(self, now: float) -> None:
        started = self.first_marker in self.text if self.first_marker else self.text
        finished = self.last_marker in self.text if self.last_marker else self.text == self.expected
        if self.first is None and started:
            self.first = now
        if self.last is None and finished:
            self.last = now


class WsSession:
    """One Streamlit session over one websocket, as the frontend drives it."""

    def __init__(self, url: str, headers: Mapping[str, str] | None = None) -> None:
        self.url = url.rstrip("/")
        self.headers = dict(headers or {})
        self.query_string = ""
        self.page_script_hash = ""
        self.chat_input_id: str | None = None
        self.cookies: dict[str, str] = {}  # set by the first request, sent with the websocket
        self.refs = 0  # ForwardMsgs sent as a cache reference (this client caches none)
        self.alerts: list[str] = []  # warning / error / info bodies of the current run
        self._ws = None
        self._reader: asyncio.Task | None = None
        self._blocks: list[tuple[int, ...]] = []  # chat_message blocks of the current run
        self._base = 0  # chat messages on the page before the question
        self._finished = asyncio.Event()  # a script run finished successfully
        self._answer: Answer | None = None
        self._answer_done = asyncio.Event()

    # ------------------------------------------------------------ wire
    async def open(self, timeout: float = 60) -> WsSession:
        """Connect and run the page once; return when the chat input is known."""
        from websockets.asyncio.client import connect

        self.cookies = await asyncio.to_thread(self._set_cookies)
        xsrf = self.cookies.get(XSRF_COOKIE)
        host = self.url.split("://", 1)[1]
        cookie = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        headers = {**self.headers, **({"Cookie": cookie} if cookie else {})}
        self._ws = await connect(
            f"ws://{host}/_stcore/stream",
            origin=self.url,
            subprotocols=["streamlit", xsrf] if xsrf else ["streamlit"],
            additional_headers=headers or None,
            compression=None,  # server.enableWebsocketCompression is off by default
            max_size=None,
            proxy=None,
        )
        self._reader = asyncio.create_task(self._read())
        self._finished.clear()
        await self._send_rerun(None)
        await asyncio.wait_for(self._finished.wait(), timeout)
        if self.chat_input_id is None:
            raise RuntimeError("the page has no chat input")
        return self

    def _set_cookies(self) -> dict[str, str]:
        """The cookies ``/_stcore/health`` sets (name -> value): Streamlit's XSRF cookie, and
        a sticky proxy's affinity cookie."""
        cookies = {}
        with urllib.request.urlopen(f"{self.url}/_stcore/health", timeout=30) as r:
            for header in r.headers.get_all("Set-Cookie") or []:
                name, _, rest = header.partition("=")
                cookies[name.strip()] = rest.split(";", 1)[0]
        return cookies

    async def _send_rerun(self, prompt: str | None) -> None:
        from streamlit.proto.BackMsg_pb2 import BackMsg

        msg = BackMsg()
        cs = msg.rerun_script
        cs.query_string = self.query_string
        cs.page_script_hash = self.page_script_hash
        cs.widget_states.SetInParent()
        for k, v in {**CONTEXT, "url": self.url + "/", "is_embedded": False}.items():
            setattr(cs.context_info, k, v)
        if prompt is not None:
            w = cs.widget_states.widgets.add()
            w.id = self.chat_input_id
            w.chat_input_value.data = prompt
            w.chat_input_value.file_uploader_state.SetInParent()
        await self._ws.send(msg.SerializeToString())

    async def close(self) -> None:
        if self._ws is not None:
            await self._ws.close()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader

    # ------------------------------------------------------------ questions
    async def ask(
        self, prompt: str, expected: str, timeout: float, markers: tuple[str, str] = ("", "")
    ) -> Answer:
        """Send ``prompt`` as the chat input's value; wait until the page run that shows
        the whole answer has finished. Never raises: problems go to ``Answer.error``."""
        a = self._answer = Answer(prompt, expected, *markers)
        self._answer_done.clear()
        self._base = len(self._blocks)  # the last run's chat messages
        a.enter = now_ms()
        try:
            await self._send_rerun(prompt)
            await asyncio.wait_for(self._answer_done.wait(), timeout)
        except TimeoutError:
            a.error = f"no finished answer after {timeout:.0f} s"
        except Exception as e:  # noqa: BLE001 - a failed session is reported, not fatal
            a.error = a.error or f"{type(e).__name__}: {e}"
        self._answer = None
        if a.error is None:
            if a.first is None or a.last is None:
                a.error = "the first or last token never showed"
            elif a.last <= a.first:
                a.error = "the whole answer arrived in one redraw (it did not stream)"
            elif a.text != a.expected:
                a.error = (
                    f"answer differs from the script ({len(a.text)} vs {len(a.expected)} chars)"
                )
        return a

    async def _read(self) -> None:
        from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

        try:
            async for raw in self._ws:
                fm = ForwardMsg()
                fm.ParseFromString(raw)
                self._on_msg(fm)
        except Exception as e:  # noqa: BLE001 - the connection closed under a question
            if self._answer is not None:
                self._answer.error = f"websocket: {type(e).__name__}: {e}"
        finally:
            self._answer_done.set()

    def _on_msg(self, fm) -> None:
        kind = fm.WhichOneof("type")
        if kind == "new_session":  # every script run starts with one
            self._blocks = []
            self.alerts = []
            self.page_script_hash = fm.new_session.page_script_hash or self.page_script_hash
        elif kind == "page_info_changed":
            self.query_string = fm.page_info_changed.query_string
        elif kind == "ref_hash":
            self.refs += 1
        elif kind == "script_finished":
            if fm.script_finished == fm.FINISHED_SUCCESSFULLY:
                self._finished.set()
                # the question's run (or the rerun it asked for) is over; a missing last
                # token is then a failure, reported by ask()
                if self._answer is not None:
                    self._answer.done = now_ms()
                    self._answer_done.set()
        elif kind == "delta":
            self._on_delta(tuple(fm.metadata.delta_path), fm.delta)

    def _on_delta(self, path: tuple[int, ...], delta) -> None:
        if delta.WhichOneof("type") == "add_block":
            if delta.add_block.WhichOneof("type") == "chat_message" and path not in self._blocks:
                self._blocks.append(path)
            return
        if delta.WhichOneof("type") != "new_element":
            return
        el = delta.new_element
        what = el.WhichOneof("type")
        if what == "chat_input":
            self.chat_input_id = el.chat_input.id
            return
        if what == "alert":
            self.alerts.append(el.alert.body)
            return
        a = self._answer
        # the answer is the second chat message after those on the page before the question
        if a is None or what != "markdown" or len(self._blocks) <= self._base + 1:
            return
        block = self._blocks[self._base + 1]
        if path[: len(block)] != block or el.markdown.element_type != el.markdown.NATIVE:
            return
        a.text = el.markdown.body.removesuffix("▌").rstrip()  # the streaming cursor
        if a.text == PLACEHOLDER:
            a.text = ""
        a.updates += 1
        a._seen(now_ms())
