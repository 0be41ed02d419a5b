"""Shared pieces of the benchmarks: machine facts, process sampling, the app and the browser.

Nothing here runs at import time. The app is the real ``streamlit run webapp/app.py``
(reusing ``tests.support.servers.StreamlitServer``); the browser is the Debian Chromium
driven by Playwright; process CPU and RSS come from ``/proc`` (no psutil needed).
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from tests.support.servers import CHROMIUM, CHROMIUM_ARGS  # one list of flags for tests and bench

ROOT = Path(__file__).resolve().parents[1]
CLK_TCK = os.sysconf("SC_CLK_TCK")


def median(values: list[float]) -> float | None:
    """Median, or None for no values."""
    return statistics.median(values) if values else None


def emit(text: str, out: Path | None) -> None:
    """Print a part's Markdown; also write it to ``out`` (``--out``) when given."""
    print(text)
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)


# ---------------------------------------------------------------- machine
def machine() -> dict[str, str]:
    """Cores, RAM, CPU model, OS and the versions that matter for the numbers."""
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_gib = "?"
    with contextlib.suppress(OSError, ValueError, IndexError):
        first = Path("/proc/meminfo").read_text().splitlines()[0]
        mem_gib = f"{int(first.split()[1]) / 1024 / 1024:.1f} GiB"
    versions = []
    for pkg in ("streamlit", "openai", "langchain-openai", "playwright", "kubernetes"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions.append(f"{pkg} {metadata.version(pkg)}")
    chromium = "?"
    with contextlib.suppress(OSError):
        import subprocess

        chromium = subprocess.run(
            [CHROMIUM, "--version"], capture_output=True, text=True, timeout=20, check=False
        ).stdout.strip()
    load = ""
    with contextlib.suppress(OSError):
        load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    return {
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "ram": mem_gib,
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "packages": ", ".join(versions),
        "chromium": chromium,
        "loadavg at start": load,
    }


# ---------------------------------------------------------------- /proc sampling
def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds used so far by ``pid``."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime


def rss_mb(pid: int) -> float:
    """Resident set size of ``pid`` in MB (MiB)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def machine_jiffies() -> tuple[float, float]:
    """(busy, total) jiffies of all cores from /proc/stat; busy excludes idle and iowait."""
    fields = [float(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return sum(fields) - fields[3] - fields[4], sum(fields)


def busy_percent(start: tuple[float, float], end: tuple[float, float]) -> float:
    """How busy the whole machine was between two ``machine_jiffies()`` readings (% of all
    cores): other work on the box shows here, not in a process's own CPU."""
    return 100 * (end[0] - start[0]) / max(end[1] - start[1], 1)


@dataclass
class CpuWindow:
    """CPU use of one process over a wall-clock window (``start()`` … ``stop()``)."""

    pid: int
    t0: float = 0.0
    c0: float = 0.0
    percent: float = 0.0

    def start(self) -> CpuWindow:
        self.t0, self.c0 = time.monotonic(), cpu_seconds(self.pid)
        return self

    def stop(self) -> float:
        """Return (and keep) the average CPU % of one core over the window."""
        dt = time.monotonic() - self.t0
        self.percent = 100 * (cpu_seconds(self.pid) - self.c0) / dt if dt > 0 else 0.0
        return self.percent


# ---------------------------------------------------------------- app + browser
@contextlib.contextmanager
def streamlit_app(root: Path | None = None, script: Path | None = None, **env: str) -> Iterator:
    """Run the chat app (``StreamlitServer`` from tests/conftest) with ``env``; stop it after.
    ``root``: another checkout of the repository whose app to run (e.g. a git worktree of
    main, for a before/after in one run); the code that drives it stays this one.
    ``script``: another page to run instead (a what-if page of ``bench/``)."""
    from tests.support.servers import StreamlitServer

    tmp = Path(tempfile.mkdtemp(prefix="bench-app-"))
    base = {
        "MESSAGES_PER_MINUTE": "100000",
        "MAX_CONCURRENT_GENERATIONS": "1000",
        "APP_MODE": "chat",
    }
    if root is not None:
        env = {**env, "PYTHONPATH": str(root)}
    if root is not None:
        script = root / "webapp" / "app.py"
    srv = StreamlitServer({**base, **{k: str(v) for k, v in env.items()}}, tmp, script=script)
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


@contextlib.contextmanager
def source_tree(rev: str) -> Iterator[Path]:
    """This repository's files at ``rev`` (``git archive`` into a temporary directory, removed
    after): the app as it was, to run beside this one (``streamlit_app(root=...)``) for a
    before/after in one run. No git state changes (no worktree, no checkout)."""
    import shutil
    import subprocess

    tmp = Path(tempfile.mkdtemp(prefix="bench-before-"))
    try:
        archive = subprocess.run(
            ["git", "archive", "--format=tar", rev], cwd=ROOT, check=True, capture_output=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(tmp)], input=archive, check=True)
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def chromium() -> Iterator:
    """One headless Chromium for the whole part."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


#: Records, in the page's clock, when Enter was pressed and when the last chat
#: message first showed FIRST / LAST. Generic mode (FIRST empty) records when the
#: answer text first left the "…" placeholder and when it last changed.
_OBSERVER_JS = """
(() => {
  const FIRST = %(first)s, LAST = %(last)s;
  const b = window.__bench = {enter: null, sent: null, first: null, last: null, changes: [],
                              done: null, base: 0};
  window.__benchReset = () => {
    Object.assign(b, {enter: null, sent: null, first: null, last: null, changes: [],
                      done: null});
    b.base = document.querySelectorAll('[data-testid="stChatMessage"]').length;
  };
  document.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && b.enter === null) b.enter = performance.now();
  }, true);
  // when the page hands its first message after Enter to the websocket (Streamlit's own
  // work in the browser: the chat input's submit, a render, the widget-state message)
  const wsSend = WebSocket.prototype.send;
  WebSocket.prototype.send = function (data) {
    if (b.enter !== null && b.sent === null) b.sent = performance.now();
    return wsSend.call(this, data);
  };
  const check = () => {
    if (b.enter === null || b.done !== null) return;
    const msgs = document.querySelectorAll('[data-testid="stChatMessage"]');
    if (msgs.length < b.base + 2) return;  // the new question and its answer
    const msg = msgs[msgs.length - 1];
    const now = performance.now();
    if (FIRST) {
      const t = msg.textContent;
      if (b.first === null && t.includes(FIRST)) b.first = now;
      if (b.last === null && t.includes(LAST)) { b.last = now; b.done = now; }
      return;
    }
    // the answer's st.markdown, not the Stop button's label (also a markdown container)
    const md = msg.querySelector('[data-testid="stMarkdown"] [data-testid="stMarkdownContainer"]');
    const text = md ? md.textContent.replace(/ ?\u258c\\s*$/, '').trim() : '';
    const prev = b.changes.length ? b.changes[b.changes.length - 1][1] : '';
    if (text && text !== '\u2026' && text !== prev) b.changes.push([now, text]);
    if (msg.textContent.includes('tokens \u00b7')) b.done = now;  // the stats caption
  };
  new MutationObserver(check).observe(document, {
    subtree: true, childList: true, characterData: true
  });
})();
"""


def observer_script(first: str = "", last: str = "") -> str:
    """The init script that times the answer (see ``_OBSERVER_JS``)."""
    import json

    return _OBSERVER_JS % {"first": json.dumps(first), "last": json.dumps(last)}


_contexts = itertools.count()


def open_chat(browser, url: str, init_script: str):
    """New browser context (= new Streamlit session) with the observer; chat input ready.

    Every context is another client behind the load balancer (its own X-Forwarded-For):
    the app allows one answer at a time per client, and the benchmarks measure many.
    """
    from tests.support.streamlit_ws import nth_client, via_load_balancer

    ctx = browser.new_context(
        viewport={"width": 1280, "height": 900},
        extra_http_headers=via_load_balancer(nth_client(next(_contexts))),
    )
    ctx.add_init_script(init_script)
    page = ctx.new_page()
    page.set_default_timeout(120_000)
    page.goto(url)
    page.get_by_test_id("stChatInputTextArea").wait_for()
    return ctx, page


def send(page, text: str) -> None:
    """Type ``text`` into the chat input and press Enter."""
    box = page.get_by_test_id("stChatInputTextArea")
    box.fill(text)
    box.press("Enter")


def read_timings(page) -> dict:
    """The observer's record: enter/first/last in ms of the page clock, plus generic fields."""
    return page.evaluate(
        """() => {
      const b = window.__bench;
      let first = b.first, last = b.last;
      if (b.changes.length) {
        const final = b.changes[b.changes.length - 1][1];
        first = first ?? b.changes[0][0];
        last = last ?? b.changes.find(c => c[1] === final)[0];
      }
      return {enter: b.enter, sent: b.sent, first, last, done: b.done,
              origin: performance.timeOrigin, text_len: b.changes.length ? b.changes[b.changes.length - 1][1].length : null};
    }"""
    )


def add_stream_interval(ap: argparse.ArgumentParser) -> None:
    """The ``--stream-interval N [N ...]`` option of a bench part run on its own: one run per N."""
    ap.add_argument(
        "--stream-interval", type=int, nargs="+", default=[1], metavar="N",
        help="tokens per SSE chunk from the fake (vLLM's --stream-interval); one run per N",
    )  # fmt: skip
