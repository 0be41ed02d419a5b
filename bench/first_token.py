"""``python -m bench.first_token --before REV``: the first-token overhead, before and after.

The app's first-token overhead (Enter -> first token on screen, minus what the ``openai``
client alone waits for the same answer) for the app at ``REV`` (``git archive`` of this
repository) and for this checkout, in one run on one machine, runs alternating so that a
change in the machine's load hits both. Each run is a fresh Chromium session; with
``--history K`` it first asks K questions (short answers of a few markdown paragraphs) so
that the measured message is the K+1-th of a conversation the page has to draw.

Per (app, K): the median overhead over ``--runs`` with its range, the median time from Enter
to the request at the backend ("before request") and from the first chunk sent to the token
on screen ("delivery"), from the scripted fake's records, and from Enter to the page handing
its message to the websocket (the browser's part of "before request": Streamlit's own work
on Enter). ``--floor`` adds a third app at K = 0, ``bench/floor_app.py``: a minimal
Streamlit chat page, the least Streamlit itself costs on this path. The backend: the scripted fake,
256 tokens at 200 tokens/s after a 0.2 s first token (part 1's case).
"""

from __future__ import annotations

import contextlib
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench.common import emit, machine, median, observer_script, open_chat, read_timings, send
from bench.streaming import (
    FIRST,
    LAST,
    MAX_MODEL_LEN,
    PROMPT,
    bench_script,
    breakdown,
    direct_stream,
    since_enter,
)

TOKENS, RATE = 256, 200.0
FLOOR_APP = Path(__file__).resolve().parent / "floor_app.py"
#: the earlier answers of a conversation: a few paragraphs, as fast as the app takes them
FILLER = [
    "Here is **a** short answer with `code`, a list and a paragraph.\n\n",
    "- one point\n- another point\n- a third one\n\n",
    "And a closing paragraph that says a little more about the question asked.",
]


#: the n-th message is there, finished (its stats caption) and the page's run is over
_ANSWERED = """n => {
  const msgs = document.querySelectorAll('[data-testid="stChatMessage"]');
  return msgs.length >= n && msgs[n - 1].textContent.includes('tokens \\u00b7')
    && !document.querySelector('[data-testid="stStatusWidgetRunningIcon"]');
}"""


@dataclass
class Cell:
    """One app at one conversation length: per run, ms."""

    overhead: list[float] = field(default_factory=list)
    before_request: list[float] = field(default_factory=list)
    delivery: list[float] = field(default_factory=list)
    browser: list[float] = field(default_factory=list)

    def add(self, r: dict, direct_first: float) -> None:
        """One run's record (``one_run``) against the ``openai`` client's first token (s)."""
        bd = r["breakdown"] or {}
        self.overhead.append(1000 * (r["first"] - direct_first))
        self.before_request.append(bd.get("pre_request_ms", float("nan")))
        self.delivery.append(bd.get("first_delivery_ms", float("nan")))
        self.browser.append(r["browser_ms"])

    def last(self) -> str:
        return (
            f"overhead {self.overhead[-1]:.0f} ms, before request {self.before_request[-1]:.0f}"
            f" ms (browser {self.browser[-1]:.0f}), delivery {self.delivery[-1]:.0f} ms"
        )


def _filler_script():
    from tests.fakes.openai_server import Script

    return Script(tokens=FILLER)


def one_run(browser, fake, url: str, history: int) -> dict:
    """One answer in a fresh session after ``history`` earlier questions: seconds and the
    fake's breakdown (``bench.streaming.breakdown``)."""
    ctx, page = open_chat(browser, url, observer_script(FIRST, LAST))
    try:
        fake.set_script(_filler_script())
        for i in range(history):
            send(page, f"earlier question {i + 1}")
            page.wait_for_function(_ANSWERED, arg=2 * (i + 1))
        fake.reset()
        fake.set_script(bench_script(TOKENS, RATE))
        page.evaluate("() => window.__benchReset()")
        send(page, PROMPT)
        page.wait_for_function("() => window.__bench.done !== null", timeout=300_000)
        t = read_timings(page)
    finally:
        ctx.close()
    a = since_enter(t)
    sent = t["sent"] - t["enter"] if t.get("sent") is not None else float("nan")
    return {**a, "breakdown": breakdown(fake, a), "browser_ms": sent}


def run(before_root: Path, histories: list[int], runs: int, log, floor: bool = False) -> dict:
    """{(app, history): Cell} with app "before" / "after" (and "floor" at K = 0)."""
    from bench.common import chromium, streamlit_app
    from tests.fakes.openai_server import spawn_fake_openai

    cells: dict[tuple[str, int], Cell] = {}
    fake_args = ("--model", "fake-chat", "--max-model-len", str(MAX_MODEL_LEN))
    env = {"DEFAULT_MAX_TOKENS": "8192"}
    with contextlib.ExitStack() as stack:
        fake = stack.enter_context(spawn_fake_openai(*fake_args))
        apps = {
            "before": stack.enter_context(streamlit_app(before_root, LLM_URL=fake.url, **env)),
            "after": stack.enter_context(streamlit_app(None, LLM_URL=fake.url, **env)),
        }
        if floor:
            apps["floor"] = stack.enter_context(
                streamlit_app(script=FLOOR_APP, LLM_URL=fake.url, **env)
            )
        browser = stack.enter_context(chromium())
        for app in apps.values():  # warm-up: imports, caches, first page load
            one_run(browser, fake, app.url, 1)
        for k in histories:
            names = [n for n in apps if n != "floor" or k == 0]
            for i in range(runs):
                for name in names[i % len(names) :] + names[: i % len(names)]:  # rotating
                    fake.reset()
                    fake.set_script(bench_script(TOKENS, RATE))
                    direct_first, _, _ = direct_stream(fake.url, "fake-chat", TOKENS)
                    r = one_run(browser, fake, apps[name].url, k)
                    cell = cells.setdefault((name, k), Cell())
                    cell.add(r, direct_first)
                    log(f"history {k} run {i + 1}/{runs} {name}: {cell.last()}")
    return cells


def _ms(values: list[float]) -> str:
    med = median(values)
    if med is None:
        return "—"
    return f"{med:.0f} ({min(values):.0f}–{max(values):.0f})"


def markdown(cells: dict, rev: str, runs: int) -> list[str]:
    head = (
        f"First-token overhead, before = `{rev}`, after = this checkout; {TOKENS} tokens at "
        f"{RATE:g} tokens/s, {runs} runs per cell, alternating; medians (range), ms"
    )
    lines = [
        head,
        "",
        "| earlier questions | app | overhead (app − direct) | Enter → request | "
        "of which Enter → sent by the browser | first chunk → on screen |",
        "|---:|---|---:|---:|---:|---:|",
    ]
    order = {"before": 0, "after": 1, "floor": 2}
    for (name, k), c in sorted(cells.items(), key=lambda kv: (kv[0][1], order[kv[0][0]])):
        lines.append(
            f"| {k} | {name} | {_ms(c.overhead)} | {_ms(c.before_request)} | "
            f"{_ms(c.browser)} | {_ms(c.delivery)} |"
        )
    m = machine()
    lines += ["", "Machine: " + ", ".join(f"{k} {v}" for k, v in m.items())]
    return lines


def main(argv: list[str] | None = None) -> int:
    import argparse

    from bench.common import source_tree

    ap = argparse.ArgumentParser(prog="python -m bench.first_token", description=__doc__)
    ap.add_argument("--before", required=True, help="git revision of the app before")
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--history", type=int, nargs="+", default=[0, 12], metavar="K")
    ap.add_argument("--out", type=Path, help="also write the Markdown here")
    ap.add_argument(
        "--floor", action="store_true",
        help="also time bench/floor_app.py, a minimal Streamlit chat page (K = 0 only)",
    )  # fmt: skip
    args = ap.parse_args(argv)

    def log(msg: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)

    with source_tree(args.before) as before_root:
        cells = run(before_root, args.history, args.runs, log, args.floor)
    text = "\n".join(markdown(cells, args.before, args.runs))
    emit(text, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
