"""Part 2: 1, 8 and 32 browser sessions streaming at once against one app process.

One Chromium, one browser context per session (each is its own Streamlit session
and its own guest user). First the idle sessions are opened (RSS measured at each
level), then each level streams: every session presses Enter, and the page clock
records when the first and the last token became visible. Delivered fraction per
session = what the backend needs for the whole answer (TTFT + (tokens - 1) / rate)
divided by what the user waited (Enter -> last token visible); 1.0 = no loss.
App CPU (% of one core, averaged over the streaming window) and RSS come from /proc.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from bench.common import CpuWindow, median, observer_script, open_chat, rss_mb, streamlit_app
from bench.streaming import (
    FIRST,
    LAST,
    MAX_MODEL_LEN,
    PROMPT,
    RATE,
    TTFT_S,
    bench_script,
)


@dataclass
class ConcurrencyRow:
    """One level: sessions streaming at once and what the app delivered and used."""

    sessions: int
    tokens: int
    fractions: list[float]
    first_s: list[float]
    cpu_percent: float
    rss_idle_mb: float
    rss_peak_mb: float
    failed: int = 0

    @property
    def median_fraction(self) -> float | None:
        return median(self.fractions)

    @property
    def worst_fraction(self) -> float | None:
        return min(self.fractions) if self.fractions else None

    @property
    def target(self) -> float:
        return 0.95 if self.sessions <= 8 else 0.85


def ideal_s(n: int) -> float:
    """What the backend needs for a whole answer of ``n`` tokens (s): TTFT + (n - 1) / rate."""
    return TTFT_S + (n - 1) / RATE


def level_row(
    level: int, n: int, res: list[dict], cpu_pct: float, rss_idle: float, peak: float
) -> ConcurrencyRow:
    """One level's row from per-session records (``enter``/``first``/``last`` in ms of one
    clock). Fraction = ``ideal_s(n)`` / (Enter -> last token visible). A record without
    both tokens, or with an ``error``, counts as failed."""
    fractions, firsts, failed = [], [], 0
    for r in res:
        if r.get("error") or r["first"] is None or r["last"] is None or r["last"] <= r["first"]:
            failed += 1
            continue
        # whole answer: what the backend needs vs what the user waited
        fractions.append(ideal_s(n) / ((r["last"] - r["enter"]) / 1000))
        firsts.append((r["first"] - r["enter"]) / 1000)
    return ConcurrencyRow(level, n, fractions, firsts, cpu_pct, rss_idle, peak, failed)


def spread(fake, res: list[dict]) -> dict[str, float]:
    """Where the start burst waits (s, epoch clocks): last Enter and last chat request at the
    backend, both relative to the first Enter, and the median request arrival."""
    enters = sorted((r["origin"] + r["enter"]) / 1000 for r in res if r.get("enter"))
    reqs = sorted(r["t"] for r in fake.requests if r["path"].endswith("/chat/completions"))
    if not enters or not reqs:
        return {}
    return {
        "last_enter_s": round(enters[-1] - enters[0], 3),
        "median_request_s": round(reqs[len(reqs) // 2] - enters[0], 3),
        "last_request_s": round(reqs[-1] - enters[0], 3),
    }


def _stream_level(pages, pid: int, n: int, timeout_s: float) -> tuple[list[dict], float, float]:
    for p in pages:
        p.evaluate("() => window.__benchReset()")
        p.get_by_test_id("stChatInputTextArea").fill(PROMPT)
    cpu = CpuWindow(pid).start()
    peak = rss_mb(pid)
    for p in pages:
        p.get_by_test_id("stChatInputTextArea").press("Enter")
    deadline = time.monotonic() + timeout_s
    pending = list(pages)
    while pending and time.monotonic() < deadline:
        time.sleep(0.5)
        peak = max(peak, rss_mb(pid))
        pending = [p for p in pending if p.evaluate("() => window.__bench.done === null")]
    cpu_pct = cpu.stop()
    out = [p.evaluate("() => ({...window.__bench, origin: performance.timeOrigin})") for p in pages]
    return out, cpu_pct, peak


def run(browser, levels: list[int], n: int, log) -> tuple[list[ConcurrencyRow], dict]:
    """Open max(levels) idle sessions (RSS at each level), then stream at each level."""
    from tests.fakes.openai_server import spawn_fake_openai

    rows: list[ConcurrencyRow] = []
    contexts = []
    with spawn_fake_openai("--model", "fake-chat", "--max-model-len", str(MAX_MODEL_LEN)) as fake:
        script = bench_script(n)
        fake.set_script(script)
        with streamlit_app(LLM_URL=fake.url, DEFAULT_MAX_TOKENS=str(n)) as app:
            pid = app.proc.pid
            idle: dict[int, float] = {0: rss_mb(pid)}
            pages = []
            try:
                for level in sorted(levels):
                    while len(pages) < level:
                        ctx, page = open_chat(browser, app.url, observer_script(FIRST, LAST))
                        contexts.append(ctx)
                        pages.append(page)
                    time.sleep(3)  # let the sessions settle
                    idle[level] = rss_mb(pid)
                    log(f"  {level:>2} idle sessions: app RSS {idle[level]:.1f} MB")
                # warm-up: the first answer of a process imports and builds the LLM client
                _stream_level(pages[:1], pid, n, TTFT_S + n / RATE * 6 + 60)
                for level in levels:
                    timeout = TTFT_S + n / RATE * 6 + 60
                    fake.reset()  # forget recorded requests (and the script: set it again)
                    fake.set_script(script)
                    res, cpu_pct, peak = _stream_level(pages[:level], pid, n, timeout)
                    log(f"     start burst: {spread(fake, res)}")
                    row = level_row(level, n, res, cpu_pct, idle[level], peak)
                    rows.append(row)
                    log(f"     per session: {[round(f, 3) for f in row.fractions]}")
                    log(
                        f"  {level:>2} streaming: median {row.median_fraction or 0:.3f} "
                        f"worst {row.worst_fraction or 0:.3f} of backend rate, "
                        f"CPU {cpu_pct:.0f}%, RSS peak {peak:.1f} MB, failed {row.failed}"
                    )
            finally:
                for ctx in contexts:
                    ctx.close()
    return rows, idle


def rss_per_idle_session(idle: dict[int, float]) -> float | None:
    """Slope (MB per session) between the smallest and the largest idle level above zero."""
    levels = sorted(k for k in idle if k > 0)
    if len(levels) < 2:
        return None
    lo, hi = levels[0], levels[-1]
    return (idle[hi] - idle[lo]) / (hi - lo)
