"""Part 1: streaming overhead for one user, app (Chromium) vs the ``openai`` client.

Backend: the scripted fake (``tests/fakes/openai_server.py``) in its own process,
TTFT 200 ms then 100 tokens/s (or a rate per case, ``run_cases``), answers of 256 / 2048 /
8192 tokens whose first and last tokens are distinctive words, so the page can tell when
each becomes visible. ``stream_interval`` N emulates vLLM's ``--stream-interval N`` (the
first token alone, then N tokens per SSE chunk; the manifests ship 4), default 1.
App times run from the Enter keydown to the DOM mutation that shows the token (page
clock); direct times from the request to the content chunk (client clock). One
extra row repeats the 256-token case against the real vLLM CPU build.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from bench.common import median, observer_script, open_chat, read_timings, send, streamlit_app

if TYPE_CHECKING:
    from tests.fakes.openai_server import Script

FIRST, LAST = "Alphastart", "Omegafinish"
TTFT_S, RATE = 0.2, 100.0
MAX_MODEL_LEN = 16384
PROMPT = "bench prompt"
SYSTEM = "You are a helpful assistant."


@dataclass
class StreamRow:
    """Medians of one answer length: first/last token seconds, app and direct."""

    backend: str
    tokens: int
    runs: int
    app_first: list[float] = field(default_factory=list)
    app_last: list[float] = field(default_factory=list)
    direct_first: list[float] = field(default_factory=list)
    direct_last: list[float] = field(default_factory=list)
    produced: int | None = None  # tokens actually produced (real vLLM)
    breakdowns: list[dict[str, float]] = field(default_factory=list)
    rate: float | None = RATE  # tokens/s of the backend after the first token (None: real)
    interval: int = 1  # tokens per SSE chunk (vLLM's --stream-interval)

    def med_breakdown(self, key: str) -> float | None:
        return median([b[key] for b in self.breakdowns if b and key in b])

    def med(self, name: str) -> float | None:
        return median(getattr(self, name))

    @property
    def first_delta_ms(self) -> float | None:
        a, d = self.med("app_first"), self.med("direct_first")
        return None if a is None or d is None else 1000 * (a - d)

    @property
    def last_ratio(self) -> float | None:
        a, d = self.med("app_last"), self.med("direct_last")
        return None if a is None or not d else a / d

    @property
    def last_target(self) -> float:
        return 1.10 if self.tokens > 4096 else 1.05


def scripted_tokens(n: int) -> list[str]:
    """``n`` pieces: FIRST, ``n - 2`` filler words, LAST (one piece = one token)."""
    from tests.fakes.openai_server import default_tokens

    middle = default_tokens(n - 1)[1:]  # " quick", " brown", ... (leading spaces)
    return [FIRST, *middle, " " + LAST]


def bench_script(n: int, rate: float = RATE, stream_interval: int = 1) -> Script:
    """The scripted answer every bench part streams: ``scripted_tokens(n)`` after ``TTFT_S``, at
    ``rate`` tokens/s, ``stream_interval`` tokens per SSE chunk (vLLM's ``--stream-interval``)."""
    from tests.fakes.openai_server import Script

    return Script(
        tokens=scripted_tokens(n), ttft_s=TTFT_S, tokens_per_s=rate, stream_interval=stream_interval
    )


def direct_stream(base_url: str, model: str, n: int, **extra) -> tuple[float, float, int]:
    """Read one answer with the ``openai`` client: (first, last) content seconds, chunks."""
    import openai

    client = openai.OpenAI(base_url=base_url + "/v1", api_key="bench", max_retries=0)
    messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": PROMPT}]
    t0 = time.perf_counter()
    stream = client.chat.completions.create(
        model=model, messages=messages, max_tokens=n, stream=True, **extra
    )
    first = last = None
    chunks = 0
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            now = time.perf_counter() - t0
            first = now if first is None else first
            last = now
            chunks += 1
    client.close()
    if first is None or last is None:
        raise RuntimeError("the stream had no content")
    return first, last, chunks


def app_stream(browser, url: str, first: str = FIRST, last: str = LAST) -> dict:
    """One answer in a fresh Chromium session; returns seconds from Enter to first/last."""
    ctx, page = open_chat(browser, url, observer_script(first, last))
    try:
        send(page, PROMPT)
        page.wait_for_function("() => window.__bench.done !== null", timeout=300_000)
        page.wait_for_timeout(300)  # let a trailing redraw land (generic mode)
        t = read_timings(page)
    finally:
        ctx.close()
    return since_enter(t)


def since_enter(t: dict) -> dict:
    """The observer's record (``read_timings``) as seconds from Enter to first/last token,
    and epoch seconds comparable with the fake's request records."""
    return {
        "first": (t["first"] - t["enter"]) / 1000,
        "last": (t["last"] - t["enter"]) / 1000,
        "text_len": t["text_len"],
        # epoch seconds, comparable with the fake's request records
        "enter_epoch": (t["origin"] + t["enter"]) / 1000,
        "first_epoch": (t["origin"] + t["first"]) / 1000,
        "last_epoch": (t["origin"] + t["last"]) / 1000,
    }


def breakdown(fake, a: dict) -> dict[str, float] | None:
    """Where the app's time goes, from the fake's records of the app's request (ms):
    Enter -> request at the backend, first chunk sent -> visible, last chunk sent -> visible."""
    gens = [r for r in fake.requests if r["path"].endswith("/chat/completions")]
    if not gens or not gens[-1].get("chunk_times"):
        return None
    g = gens[-1]
    return {
        "pre_request_ms": 1000 * (g["t"] - a["enter_epoch"]),
        "first_delivery_ms": 1000 * (a["first_epoch"] - g["chunk_times"][0]),
        "last_delivery_ms": 1000 * (a["last_epoch"] - g["chunk_times"][-1]),
        "other_requests": [
            (r["path"], round(1000 * (r["t"] - a["enter_epoch"])))
            for r in fake.requests
            if r is not g and r["t"] > a["enter_epoch"]
        ],
    }


def run_fake(
    browser, lengths: list[int], runs: int, log, stream_interval: int = 1
) -> list[StreamRow]:
    """App and direct against the scripted fake at ``RATE``, ``runs`` times per answer length;
    ``stream_interval``: tokens per SSE chunk (vLLM's ``--stream-interval``)."""
    return run_cases(browser, [(n, RATE) for n in lengths], runs, log, stream_interval)


def run_cases(
    browser, cases: list[tuple[int, float]], runs: int, log, stream_interval: int = 1
) -> list[StreamRow]:
    """App and direct against the scripted fake, ``runs`` times per (tokens, tokens/s) case,
    one app process for all cases (its first answer is a warm-up, not counted)."""
    from tests.fakes.openai_server import spawn_fake_openai

    rows = []
    fake_args = ("--model", "fake-chat", "--max-model-len", str(MAX_MODEL_LEN))
    with (
        spawn_fake_openai(*fake_args) as fake,
        streamlit_app(LLM_URL=fake.url, DEFAULT_MAX_TOKENS="8192") as app,
    ):
        for k, (n, rate) in enumerate(cases):
            script = bench_script(n, rate, stream_interval)
            fake.set_script(script)
            row = StreamRow("fake", n, runs, rate=rate, interval=stream_interval)
            if k == 0:
                app_stream(browser, app.url)  # warm-up: imports, caches, first page load
            for i in range(runs):
                f, la, _ = direct_stream(fake.url, "fake-chat", n)
                row.direct_first.append(f)
                row.direct_last.append(la)
                fake.reset()  # forget recorded requests (and the script: set it again)
                fake.set_script(script)
                a = app_stream(browser, app.url)
                row.app_first.append(a["first"])
                row.app_last.append(a["last"])
                bd = breakdown(fake, a)
                if bd:
                    row.breakdowns.append(bd)
                log(
                    f"  {n:>5} tokens @{rate:g}/s N={stream_interval} run {i + 1}/{runs}: "
                    f"direct {f:.3f}/{la:.3f} s, app {a['first']:.3f}/{a['last']:.3f} s; {bd}"
                )
            rows.append(row)
    return rows


def run_vllm(browser, runs: int, log, n: int = 256) -> StreamRow:
    """The 256-token case against the real vLLM CPU build (tiny model, greedy decoding)."""
    from bench.vllm_server import real_vllm

    row = StreamRow("real vLLM", n, runs, rate=None)
    with real_vllm(log) as (url, model):
        env = {"LLM_URL": url, "DEFAULT_MAX_TOKENS": str(n), "DEFAULT_TEMPERATURE": "0"}
        with streamlit_app(**env) as app:
            app_stream(browser, app.url, "", "")  # warm-up
            for i in range(runs):
                f, la, chunks = direct_stream(url, model, n, temperature=0)
                row.direct_first.append(f)
                row.direct_last.append(la)
                row.produced = chunks
                a = app_stream(browser, app.url, "", "")
                row.app_first.append(a["first"])
                row.app_last.append(a["last"])
                log(
                    f"  vLLM run {i + 1}/{runs}: direct {f:.3f}/{la:.3f} s ({chunks} chunks), "
                    f"app {a['first']:.3f}/{a['last']:.3f} s"
                )
    return row
