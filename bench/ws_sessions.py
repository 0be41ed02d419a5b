"""Part 2b: the concurrency part without the browser — Streamlit's own websocket protocol.

Each session is a ``tests.support.streamlit_ws.WsSession``: a Python client of
``ws://HOST/_stcore/stream`` doing what the frontend does (see that module). One asyncio
loop drives all sessions; no page is rendered, so the numbers are the app's (plus a cheap
protobuf parse per message).

Timing (epoch ms, like the browser observer): Enter = the BackMsg is sent; first / last
token = the first delta whose answer markdown (the NATIVE markdown in the new assistant
chat message) contains FIRST / LAST. Each answer must reconstruct exactly the scripted
text, or the session counts as failed. Rows and fractions come from ``bench.concurrency``.
Every session asks its own prompt (``PROMPT`` + session number), so the fake's request
records can be matched to sessions: that splits the wait into Enter -> request at the
backend, the backend's own lateness, and last chunk sent -> last token received.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench.common import (
    CpuWindow,
    add_stream_interval,
    busy_percent,
    machine_jiffies,
    median,
    rss_mb,
    streamlit_app,
)
from bench.concurrency import ConcurrencyRow, ideal_s, level_row, spread
from bench.streaming import (
    FIRST,
    LAST,
    MAX_MODEL_LEN,
    PROMPT,
    RATE,
    TTFT_S,
    bench_script,
    scripted_tokens,
)
from bench.tables import concurrency_table
from tests.support.streamlit_ws import Answer, WsSession, nth_client, via_load_balancer


def _child_pid(marker: str) -> int | None:
    """Pid of this process's child whose command line contains ``marker`` (the fake)."""
    me = str(os.getpid())
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError):
            if stat.read_text().rsplit(")", 1)[1].split()[1] != me:
                continue
            if marker in (stat.parent / "cmdline").read_bytes().decode(errors="replace"):
                return int(stat.parent.name)
    return None


# ---------------------------------------------------------------- the part
@dataclass
class WsResult:
    """Rows as in part 2, the idle RSS levels, and per level: where the wait went."""

    rows: list[ConcurrencyRow]
    idle: dict[int, float]
    breakdown: dict[int, dict] = field(default_factory=dict)
    interval: int = 1  # tokens per SSE chunk from the fake (vLLM's --stream-interval)


def expected_answer(n: int) -> str:
    """The text the page must show for a scripted answer of ``n`` tokens."""
    return "".join(scripted_tokens(n)).strip()


def _match(fake, answers: list[Answer], n: int) -> dict:
    """Per session, from the fake's record of that session's request (ms): Enter -> request
    at the backend, first chunk sent -> first token received, backend lateness (last chunk
    vs request + ideal), last chunk sent -> last token received; medians and maxima."""
    by_prompt = {}
    for r in fake.requests:
        if r["path"].endswith("/chat/completions") and r.get("chunk_times"):
            user = [m for m in r["body"].get("messages", []) if m.get("role") == "user"]
            if user:
                by_prompt[user[-1].get("content")] = r
    parts: dict[str, list[float]] = {
        "pre_request": [], "first_delivery": [], "backend_late": [], "last_delivery": [],
    }  # fmt: skip
    for a in answers:
        r = by_prompt.get(a.prompt)
        if r is None or a.enter is None or a.last is None:
            continue
        parts["pre_request"].append(1000 * r["t"] - a.enter)
        if a.first is not None:
            parts["first_delivery"].append(a.first - 1000 * r["chunk_times"][0])
        parts["backend_late"].append(1000 * (r["chunk_times"][-1] - r["t"] - ideal_s(n)))
        parts["last_delivery"].append(a.last - 1000 * r["chunk_times"][-1])
    out = {}
    for k, v in parts.items():
        out[k] = (median(v), max(v)) if v else (None, None)
    out["matched"] = len(parts["pre_request"])
    return out


def client_headers(i: int) -> dict[str, str]:
    """Session ``i``'s request headers straight at the app: client ``i`` behind GKE's load
    balancer (every session is another client: the app runs one answer per client)."""
    return via_load_balancer(nth_client(i))


async def open_sessions(
    url: str, sessions: list[WsSession], count: int, headers=client_headers
) -> None:
    """Open sessions at ``url`` one after another until ``sessions`` holds ``count``;
    ``headers(i)`` gives session ``i``'s request headers."""
    while len(sessions) < count:
        sessions.append(await WsSession(url, headers(len(sessions))).open())


@dataclass
class LevelRun:
    """One level streamed: the answers, and per app process (in the order of the pids given)
    its CPU (% of one core) and RSS peak (MB); ``other``: fake, client and machine CPU."""

    answers: list[Answer]
    cpu: list[float]
    peak: list[float]
    other: dict


async def stream_level(
    sessions, pids: list[int], n: int, timeout: float, first_index: int = 0
) -> LevelRun:
    """Every session asks at once; returns answers and CPU: each app process and the fake
    (% of one core), this client (% of one core), the whole machine (% of all cores busy)."""
    expected = expected_answer(n)
    fake_pid = _child_pid("tests.fakes.openai_server")
    fake_cpu = CpuWindow(fake_pid).start() if fake_pid else None
    m0 = machine_jiffies()
    cpus = [CpuWindow(pid).start() for pid in pids]
    c0, t0 = time.process_time(), time.monotonic()
    peak = [rss_mb(pid) for pid in pids]
    tasks = [
        asyncio.create_task(
            s.ask(f"{PROMPT} {first_index + i}", expected, timeout, markers=(FIRST, LAST))
        )
        for i, s in enumerate(sessions)
    ]
    pending = set(tasks)
    while pending:
        _, pending = await asyncio.wait(pending, timeout=0.5)
        peak = [max(p, rss_mb(pid)) for p, pid in zip(peak, pids, strict=True)]
    cpu_pct = [c.stop() for c in cpus]
    other = {
        "client_cpu": 100 * (time.process_time() - c0) / (time.monotonic() - t0),
        "fake_cpu": fake_cpu.stop() if fake_cpu else None,
        "machine_busy": busy_percent(m0, machine_jiffies()),
    }
    return LevelRun([t.result() for t in tasks], cpu_pct, peak, other)


async def _run(app, fake, script, levels: list[int], n: int, log) -> WsResult:
    pid = app.proc.pid
    idle: dict[int, float] = {0: rss_mb(pid)}
    sessions: list[WsSession] = []
    res = WsResult([], idle)
    timeout = TTFT_S + n / RATE * 6 + 60
    try:
        for level in sorted(levels):
            await open_sessions(app.url, sessions, level)
            await asyncio.sleep(3)  # let the sessions settle
            idle[level] = rss_mb(pid)
            log(f"  {level:>2} idle sessions: app RSS {idle[level]:.1f} MB")
        # warm-up: the first answer of a process imports and builds the LLM client
        await stream_level(sessions[:1], [pid], n, timeout, first_index=1000)
        for level in levels:
            fake.reset()  # forget recorded requests (and the script: set it again)
            fake.set_script(script)
            lv = await stream_level(sessions[:level], [pid], n, timeout, first_index=100 * level)
            answers, cpu_pct, peak, other = lv.answers, lv.cpu[0], lv.peak[0], lv.other
            recs = [a.record() for a in answers]
            row = level_row(level, n, recs, cpu_pct, idle[level], peak)
            res.rows.append(row)
            bd = _match(fake, answers, n)
            bd.update(other)
            bd["spread"] = spread(fake, recs)
            bd["errors"] = [a.error for a in answers if a.error]
            bd["updates"] = median([a.updates for a in answers])
            res.breakdown[level] = bd
            log(f"     per session: {[round(f, 3) for f in row.fractions]}")
            split = {k: bd[k] for k in ("pre_request", "first_delivery", "backend_late")}
            log(f"     start burst: {bd['spread']}; wait split (median, max ms): {split}, "
                f"last_delivery {bd['last_delivery']}")  # fmt: skip
            for err in bd["errors"]:
                log(f"     FAILED session: {err}")
            log(
                f"  {level:>2} streaming (N={script.stream_interval}): median "
                f"{row.median_fraction or 0:.3f} "
                f"worst {row.worst_fraction or 0:.3f} of backend rate, app CPU {cpu_pct:.0f}%, "
                f"fake CPU {other['fake_cpu'] or 0:.0f}%, client CPU {other['client_cpu']:.0f}%, "
                f"machine {other['machine_busy']:.0f}% busy, RSS peak {peak:.1f} MB, "
                f"failed {row.failed}"
            )
        if any(s.refs for s in sessions):
            log(f"  note: {sum(s.refs for s in sessions)} cache references were received")
    finally:
        for s in sessions:
            await s.close()
    return res


def run(
    levels: list[int],
    n: int,
    log,
    app_env: dict[str, str] | None = None,
    stream_interval: int = 1,
) -> WsResult:
    """Part 2 with protocol clients instead of Chromium pages: same fake, same app, same
    levels and answer length, same formulas (``bench.concurrency``). ``app_env`` adds
    environment variables for the app (experiments, e.g. Streamlit config overrides);
    ``stream_interval``: tokens per SSE chunk from the fake (vLLM's ``--stream-interval``)."""
    from tests.fakes.openai_server import spawn_fake_openai

    with spawn_fake_openai("--model", "fake-chat", "--max-model-len", str(MAX_MODEL_LEN)) as fake:
        script = bench_script(n, stream_interval=stream_interval)
        fake.set_script(script)
        env = {"LLM_URL": fake.url, "DEFAULT_MAX_TOKENS": str(n), **(app_env or {})}
        with streamlit_app(**env) as app:
            res = asyncio.run(_run(app, fake, script, levels, n, log))
    res.interval = stream_interval
    return res


# ---------------------------------------------------------------- report
def _ms(pair) -> str:
    lo, hi = pair
    return "—" if lo is None else f"{lo:.0f} / {hi:.0f}"


def markdown_section(res: WsResult) -> list[str]:
    """Part 2's table for the protocol clients, and where each level's wait went."""
    out = [
        "### 2b. Concurrency without the browser (websocket protocol clients,"
        f" --stream-interval {res.interval})",
        "",
    ]
    out += [*concurrency_table(res.rows, res.idle), ""]
    out += [
        "| sessions | Enter → request at backend (ms) | first chunk sent → first token"
        " received (ms) | backend late at last chunk (ms) | last chunk sent → last token"
        " received (ms) | answer redraws per session | CPU % of a core: fake / client"
        " | machine busy (% of all cores) |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for level, bd in res.breakdown.items():
        out.append(
            f"| {level} | {_ms(bd['pre_request'])} | {_ms(bd['first_delivery'])} "
            f"| {_ms(bd['backend_late'])} | {_ms(bd['last_delivery'])} "
            f"| {bd['updates'] or 0:.0f} | {bd['fake_cpu'] or 0:.0f} / {bd['client_cpu']:.0f} "
            f"| {bd['machine_busy']:.0f} |"
        )
    out += [
        "",
        "Split columns: median / max over the sessions, each matched to its own request at the"
        " fake. Redraws: answer-markdown deltas a session received (the page redraws at most"
        " every 0.1 s).",
    ]
    return [*out, ""]


def compare_with_browser(runs: int, n: int, log) -> list[dict]:
    """Validation: one fresh session at a time against one app, alternating the Chromium
    page (``bench.streaming.app_stream``) and this client; seconds from Enter."""
    from concurrent.futures import ThreadPoolExecutor

    from bench.common import chromium
    from bench.streaming import app_stream, breakdown
    from tests.fakes.openai_server import spawn_fake_openai

    out = []
    with (
        spawn_fake_openai("--model", "fake-chat", "--max-model-len", str(MAX_MODEL_LEN)) as fake,
        streamlit_app(LLM_URL=fake.url, DEFAULT_MAX_TOKENS=str(n)) as app,
        chromium() as browser,
    ):
        fake.set_script(bench_script(n))
        app_stream(browser, app.url)  # warm-up

        async def one() -> Answer:
            s = await WsSession(app.url).open()
            try:
                return await s.ask(
                    PROMPT, expected_answer(n), TTFT_S + n / RATE * 6 + 60, markers=(FIRST, LAST)
                )
            finally:
                await s.close()

        for i in range(runs):
            b = app_stream(browser, app.url)
            b_split = breakdown(fake, b) or {}
            # Playwright's sync API owns this thread's event loop: run the client in another
            a = ThreadPoolExecutor(1).submit(asyncio.run, one()).result()
            row = {
                "browser_first": b["first"], "browser_last": b["last"],
                "ws_first": (a.first - a.enter) / 1000 if a.first else None,
                "ws_last": (a.last - a.enter) / 1000 if a.last else None, "ws_error": a.error,
                "browser_pre_request_ms": b_split.get("pre_request_ms"),
                "ws_pre_request_ms": _match(fake, [a], n)["pre_request"][0],
                "browser_first_delivery_ms": b_split.get("first_delivery_ms"),
                "ws_first_delivery_ms": _match(fake, [a], n)["first_delivery"][0],
            }  # fmt: skip
            log(f"  run {i + 1}/{runs}: {row}")
            out.append(row)
    return out


def main(argv: list[str] | None = None) -> int:
    """``python -m bench.ws_sessions [--levels 1 8 32] [--tokens 512] [--compare RUNS]
    [--app-env KEY=VALUE ...] [--stream-interval N ...]``."""
    import argparse
    import sys

    ap = argparse.ArgumentParser(prog="python -m bench.ws_sessions")
    ap.add_argument("--levels", type=int, nargs="+", default=[1, 8, 32])
    ap.add_argument("--tokens", type=int, default=512)
    ap.add_argument("--compare", type=int, metavar="RUNS", help="browser vs client, 1 session")
    ap.add_argument("--app-env", nargs="+", default=[], metavar="KEY=VALUE", help="app env")
    add_stream_interval(ap)
    args = ap.parse_args(argv)

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    if args.compare:
        rows = compare_with_browser(args.compare, args.tokens, log)
        for k in ("first", "last"):
            d = [1000 * (r[f"ws_{k}"] - r[f"browser_{k}"]) for r in rows if r[f"ws_{k}"]]
            print(f"{k} token, client − browser (ms): median {median(d)}, all {d}")
        return 0
    app_env = dict(kv.split("=", 1) for kv in args.app_env)
    for interval in args.stream_interval:
        res = run(args.levels, args.tokens, log, app_env, stream_interval=interval)
        print("\n".join(markdown_section(res)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
