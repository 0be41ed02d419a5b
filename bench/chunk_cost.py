"""App CPU per streamed chunk, and what vLLM's ``--stream-interval N`` does to it.

``python -m bench.chunk_cost [--tokens 512] [--rate 100] [--levels 1 32] [--intervals 1 2 4 8]
[--before DIR]``

``--before DIR``: also run the app of another checkout (a git worktree of main: ``git
worktree add DIR main``) and report its rows as path "before" next to this one's ("app"),
mode by mode, in one run on the same machine (before, app, then the next mode).

The real app (``streamlit run webapp/app.py``, once with ``LLM_MODE=chat``, once with
``LLM_MODE=completion``) streams answers from the scripted fake (its own process), driven by
protocol-level clients of Streamlit's websocket (``tests.support.streamlit_ws.WsSession``), 1
and 32 sessions at once, fresh sessions (a new conversation) for every measurement. The fake
emulates ``--stream-interval N``: the first token alone, then N tokens per SSE chunk.

App CPU = user + system seconds of the Streamlit process (``/proc/<pid>/stat``) over the
window from the first question to the last answer. Each answer costs a fixed part (the page
run for the question, saving it, the client call) plus a part per chunk; so each level also
runs a short answer (``SHORT`` tokens), and

    µs per chunk = (CPU long − CPU short) / (chunks long − chunks short)

(chunks counted by the fake: every SSE event carrying tokens). µs per token is the same
difference over tokens; it is what N changes. The floor is a bare client reading the same
streams in this process (threads, one per session): ``httpx`` lines + ``json.loads``, and
the ``openai`` SDK (what LangChain wraps); µs per chunk = its process CPU / chunks.

Smoothness: for every visible redraw of the answer (a markdown delta the session receives)
its time; the gaps between consecutive redraws from first to last token, pooled over the
sessions (median, p95, max ms), and tokens per redraw. The app redraws at most every 0.1 s
(``REDRAW_EVERY_S`` in the chat page), so N only shows once N / rate nears that.
Not part of ``make test``: the numbers depend on the machine and its load.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench.common import cpu_seconds, machine, median, streamlit_app
from bench.streaming import (
    FIRST,
    LAST,
    MAX_MODEL_LEN,
    PROMPT,
    TTFT_S,
    bench_script,
    scripted_tokens,
)
from tests.support.streamlit_ws import WsSession, now_ms, nth_client, via_load_balancer

SHORT = 8  # tokens of the short answer that measures the fixed cost per answer
MODES = ("chat", "completion")


@dataclass
class Row:
    """One (mode, interval, sessions) measurement."""

    path: str  # "app" | "httpx" | "openai"
    mode: str
    interval: int
    sessions: int
    tokens: int
    chunks: int = 0  # token-carrying SSE events, all sessions
    cpu_s: float = 0.0  # process CPU seconds over the window
    short_chunks: int = 0
    short_cpu_s: float = 0.0
    wall_s: float = 0.0
    cpu_percent: float = 0.0
    gaps_ms: list[float] = field(default_factory=list)
    updates: list[int] = field(default_factory=list)
    fractions: list[float] = field(default_factory=list)  # backend time / time waited
    backend: list[float] = field(default_factory=list)  # ideal / the fake's own send time
    failed: int = 0
    load: str = ""  # 1-minute load average of the machine after the row

    @property
    def us_per_chunk(self) -> float | None:
        d = self.chunks - self.short_chunks
        return 1e6 * (self.cpu_s - self.short_cpu_s) / d if d > 0 else None

    @property
    def us_per_token(self) -> float | None:
        d = self.sessions * (self.tokens - (SHORT if self.short_chunks else 0))
        return 1e6 * (self.cpu_s - self.short_cpu_s) / d if d > 0 else None

    @property
    def fixed_ms(self) -> float | None:
        """CPU ms per answer that does not depend on its length (the short answer minus its
        chunks at the per-chunk rate)."""
        c = self.us_per_chunk
        if not self.short_chunks or c is None:
            return None
        return (self.short_cpu_s - c * 1e-6 * self.short_chunks) * 1000 / self.sessions


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


# ---------------------------------------------------------------- the app
class TimedSession(WsSession):
    """A ``WsSession`` that also keeps when each redraw of the answer arrived."""

    def __init__(self, *a, **kw) -> None:
        super().__init__(*a, **kw)
        self.redraws: list[float] = []

    def _on_delta(self, path, delta) -> None:
        a = self._answer
        before = a.updates if a is not None else None
        super()._on_delta(path, delta)
        if a is not None and a.updates != before and a.text:
            self.redraws.append(now_ms())


def _gaps(times: list[float]) -> list[float]:
    return [b - a for a, b in zip(times, times[1:], strict=False)]


def _chunks_sent(fake) -> int:
    return sum(
        len(r.get("chunk_times") or []) for r in fake.requests if r["path"].endswith("completions")
    )


def _backend_fractions(fake, ideal: float) -> list[float]:
    """Per request: ideal answer time / (last chunk sent − request received) at the fake, to
    tell a late backend (the fake's own threads short of CPU) from a late app."""
    return [
        ideal / (r["chunk_times"][-1] - r["t"])
        for r in fake.requests
        if r["path"].endswith("completions") and r.get("chunk_times")
    ]


def _load() -> str:
    from pathlib import Path

    return Path("/proc/loadavg").read_text().split()[0]


def _measure(app, fake, script, level: int, n: int, first_client: int):
    """One level: CPU seconds of the app, chunks sent, wall seconds, answers, sessions."""
    fake.reset()
    fake.set_script(script)
    timeout = TTFT_S + n / (script.tokens_per_s or 1000) * 8 + 60
    # the window: from the questions to the last answer (the opens run before it)
    loop = asyncio.new_event_loop()
    try:
        sessions_ready = loop.run_until_complete(_open(app.url, level, first_client))
        c0, t0 = cpu_seconds(app.proc.pid), time.monotonic()
        answers = loop.run_until_complete(_ask(sessions_ready, n, first_client, timeout))
        cpu, wall = cpu_seconds(app.proc.pid) - c0, time.monotonic() - t0
        loop.run_until_complete(_close(sessions_ready))
    finally:
        loop.close()
    return cpu, _chunks_sent(fake), wall, answers, sessions_ready


async def _open(url: str, level: int, first_client: int) -> list[TimedSession]:
    out = []
    for i in range(level):
        out.append(await TimedSession(url, via_load_balancer(nth_client(first_client + i))).open())
    await asyncio.sleep(0.5)  # let the page runs of the opens settle
    return out


async def _ask(sessions: list[TimedSession], n: int, first_client: int, timeout: float):
    expected = "".join(scripted_tokens(n)).strip()
    return await asyncio.gather(
        *(
            s.ask(f"{PROMPT} {first_client + i}", expected, timeout, markers=(FIRST, LAST))
            for i, s in enumerate(sessions)
        )
    )


async def _close(sessions: list[TimedSession]) -> None:
    for s in sessions:
        await s.close()


def run_app(
    fake, mode: str, cfg: dict, log, client_base: int, root: Path | None = None
) -> list[Row]:
    """Every (interval, level) for one mode of the app; ``client_base`` keeps clients apart;
    ``root``: the checkout whose app runs (None: this one), its rows are path "before"."""

    n, rate = cfg["tokens"], cfg["rate"]
    env = {"LLM_URL": fake.url, "LLM_MODE": mode, "DEFAULT_MAX_TOKENS": str(n)}
    rows: list[Row] = []
    clients = iter(range(client_base, client_base + 100_000, 100))
    with streamlit_app(root, **env) as app:
        warm = bench_script(n, rate)
        _measure(app, fake, warm, 1, n, next(clients))  # imports, client, first page
        short_by_level = {}
        for level in cfg["levels"]:
            short = bench_script(SHORT, rate)
            cpu, chunks, *_ = _measure(app, fake, short, level, SHORT, next(clients))
            short_by_level[level] = (cpu, chunks)
        for interval in cfg["intervals"]:
            for level in cfg["levels"]:
                script = bench_script(n, rate, interval)
                cpu, chunks, wall, answers, sessions = _measure(
                    app, fake, script, level, n, next(clients)
                )
                row = Row("app" if root is None else "before", mode, interval, level, n, chunks,
                          cpu)  # fmt: skip
                row.short_cpu_s, row.short_chunks = short_by_level[level]
                row.wall_s, row.cpu_percent = wall, 100 * cpu / wall if wall else 0.0
                ideal = TTFT_S + (n - 1) / rate
                row.backend, row.load = _backend_fractions(fake, ideal), _load()
                for a, s in zip(answers, sessions, strict=True):
                    if a.error or a.last is None:
                        row.failed += 1
                        continue
                    row.fractions.append(ideal / ((a.last - a.enter) / 1000))
                    row.gaps_ms += _gaps(s.redraws)
                    row.updates.append(a.updates)
                rows.append(row)
                log(_line(row))
    return rows


# ---------------------------------------------------------------- the floor
def _httpx_reader(url: str, path: str):
    """A bare reader: httpx lines, ``json.loads`` per SSE event (client built up front)."""
    import json

    import httpx

    client = httpx.Client(timeout=120)

    def read(body: dict) -> None:
        with client.stream("POST", f"{url}/v1/{path}", json=body) as r:
            for line in r.iter_lines():
                if line.startswith("data: ") and line != "data: [DONE]":
                    json.loads(line[6:])

    return read


def _openai_reader(url: str, path: str):
    """The ``openai`` SDK's stream (what ChatOpenAI / VLLMOpenAI wrap), client built up front."""
    import openai

    client = openai.OpenAI(base_url=url + "/v1", api_key="bench", max_retries=0)
    create = client.chat.completions.create if path == "chat/completions" else None
    create = create or client.completions.create

    def read(body: dict) -> None:
        for _ in create(**body):
            pass

    return read


def _floor_once(fake, reader_of, mode: str, script, level: int, n: int):
    """``level`` threads, each with its own client built before the window, read one answer
    at once; returns (CPU seconds of this process, chunks, wall seconds)."""
    fake.reset()
    fake.set_script(script)
    body: dict = {"model": "fake-chat", "max_tokens": n, "stream": True}
    if mode == "chat":
        path, body["messages"] = "chat/completions", [{"role": "user", "content": PROMPT}]
    else:
        path, body["prompt"] = "completions", PROMPT
    readers = [reader_of(fake.url, path) for _ in range(level)]
    start = threading.Barrier(level + 1)

    def run(read) -> None:
        start.wait()
        read(body)

    threads = [threading.Thread(target=run, args=(r,)) for r in readers]
    for t in threads:
        t.start()
    c0, t0 = time.process_time(), time.monotonic()
    start.wait()
    for t in threads:
        t.join()
    return time.process_time() - c0, _chunks_sent(fake), time.monotonic() - t0


def run_floor(fake, path_name: str, mode: str, interval: int, level: int, cfg: dict) -> Row:
    """The floor: long minus short answer, as for the app; CPU of this process."""
    from tests.fakes.openai_server import Script

    n, rate = cfg["tokens"], cfg["rate"]
    reader_of = _httpx_reader if path_name == "httpx" else _openai_reader

    def script(k: int) -> Script:
        return bench_script(k, rate, interval)

    short_cpu, short_chunks, _ = _floor_once(fake, reader_of, mode, script(SHORT), level, SHORT)
    cpu, chunks, wall = _floor_once(fake, reader_of, mode, script(n), level, n)
    row = Row(path_name, mode, interval, level, n, chunks, cpu, short_chunks, short_cpu)
    row.backend, row.load = _backend_fractions(fake, TTFT_S + (n - 1) / rate), _load()
    row.wall_s, row.cpu_percent = wall, 100 * cpu / wall if wall else 0.0
    return row


# ---------------------------------------------------------------- report
def _f(v: float | None, fmt: str = ".0f") -> str:
    return "—" if v is None else format(v, fmt)


def _line(r: Row) -> str:
    return (
        f"  {r.path:>6} {r.mode:>10} N={r.interval} {r.sessions:>2} sessions: "
        f"{r.chunks} chunks, {_f(r.us_per_chunk)} µs/chunk, {_f(r.us_per_token)} µs/token, "
        f"CPU {r.cpu_percent:.0f}%, gaps median {_f(median(r.gaps_ms))} ms, "
        f"delivered {_f(median(r.fractions), '.3f')} (fake {_f(median(r.backend), '.3f')}), "
        f"failed {r.failed}, load {r.load}"
    )


def markdown(rows: list[Row], cfg: dict) -> list[str]:
    """The table: one line per path, mode, N and sessions."""
    out = [
        f"### App CPU per streamed chunk, and --stream-interval N ({cfg['tokens']} tokens at "
        f"{cfg['rate']:g} tokens/s per session, TTFT {TTFT_S:g} s)",
        "",
        "| path | mode | N | sessions | chunks / answer | µs CPU / chunk | µs CPU / token "
        "| fixed ms / answer | CPU % of a core | redraw gap median / p95 / max (ms) "
        "| tokens / redraw | delivered median / worst | fake's own rate median / worst "
        "| failed | load |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        gaps = r.gaps_ms
        gap = (
            "—" if not gaps
            else f"{_f(median(gaps))} / {_f(_pct(gaps, 95))} / {_f(max(gaps))}"
        )  # fmt: skip
        per_redraw = median([r.tokens / u for u in r.updates if u])
        delivered = (
            "—" if not r.fractions
            else f"{median(r.fractions):.3f} / {min(r.fractions):.3f}"
        )  # fmt: skip
        own = "—" if not r.backend else f"{median(r.backend):.3f} / {min(r.backend):.3f}"
        out.append(
            f"| {r.path} | {r.mode} | {r.interval} | {r.sessions} "
            f"| {r.chunks / max(r.sessions, 1):.0f} | {_f(r.us_per_chunk)} "
            f"| {_f(r.us_per_token)} | {_f(r.fixed_ms, '.1f')} | {r.cpu_percent:.0f} | {gap} "
            f"| {_f(per_redraw, '.1f')} | {delivered} | {own} | {r.failed} | {r.load} |"
        )
    out += [
        "",
        "App rows: CPU of the Streamlit process; per chunk / per token = (long − short answer)"
        f" / (chunks or tokens long − short), short = {SHORT} tokens, so the fixed cost of an"
        " answer (page run, saving, client call) is not in them; 'fixed ms' is that cost."
        " Floor rows (httpx, openai): CPU of a bare client in this process, one thread and"
        " client per session, computed the same way. Delivered: backend time for the answer / time from Enter"
        " to the last token on the page (1.0 = no loss); the fake's own rate: backend time /"
        " (its last chunk sent − request received), below 1 when the fake itself is late."
        " Load: the machine's 1-minute load average after the row (other work shares it).",
    ]
    return [*out, ""]


def main(argv: list[str] | None = None) -> int:
    """Run the app rows (both modes) and the floor rows; print the Markdown table."""
    import argparse

    from tests.fakes.openai_server import spawn_fake_openai

    ap = argparse.ArgumentParser(prog="python -m bench.chunk_cost", description=__doc__)
    ap.add_argument("--tokens", type=int, default=512)
    ap.add_argument("--rate", type=float, default=100.0, help="tokens/s per session")
    ap.add_argument("--levels", type=int, nargs="+", default=[1, 32])
    ap.add_argument("--intervals", type=int, nargs="+", default=[1, 2, 4, 8])
    ap.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    ap.add_argument("--no-floor", action="store_true")
    ap.add_argument("--before", type=Path, help="a checkout of the code before (git worktree)")
    args = ap.parse_args(argv)
    cfg = vars(args)

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    log(f"machine: {machine()}")
    rows: list[Row] = []
    with spawn_fake_openai("--model", "fake-chat", "--max-model-len", str(MAX_MODEL_LEN)) as fake:
        for k, mode in enumerate(args.modes):
            if args.before is not None:
                log(f"before ({args.before}), {mode} mode")
                rows += run_app(fake, mode, cfg, log, 20_000 * k + 10_000, args.before)
            log(f"app, {mode} mode")
            rows += run_app(fake, mode, cfg, log, client_base=20_000 * k)
        if not args.no_floor:
            for path_name in ("httpx", "openai"):
                for mode in args.modes:
                    for interval in args.intervals:
                        for level in args.levels:
                            row = run_floor(fake, path_name, mode, interval, level, cfg)
                            rows.append(row)
                            log(_line(row))
    print("\n".join(markdown(rows, cfg)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
