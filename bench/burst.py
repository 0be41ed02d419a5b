"""``python -m bench.burst --before DIR --level 48 --rounds 6``: everyone presses Enter at
once, before and after, alternating.

Two app processes (the checkout ``DIR`` and this one) on one scripted fake (512 tokens at
100 tokens/s, 4 tokens per SSE chunk, as the manifests' ``--stream-interval``); ``--level``
protocol sessions at each (``bench.ws_sessions``), all opened first; then ``--rounds`` rounds,
each app's sessions all asking at once, the order of the apps swapped every round. Per round
and app: the delivered fraction of the backend rate (median and worst session, as part 2b),
the wait from Enter to the request at the backend (median and longest: the burst's queue),
the app's CPU. The summary gives the medians over the rounds.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
from pathlib import Path

from bench.common import emit, machine, streamlit_app
from bench.concurrency import level_row
from bench.streaming import MAX_MODEL_LEN, bench_script
from bench.ws_sessions import _match, open_sessions, stream_level

TOKENS = 512
COLUMNS = ("delivered median", "worst session", "Enter → request median (ms)",
           "Enter → request longest (ms)", "app CPU %", "failed")  # fmt: skip


async def _rounds(apps: dict, fake, script, level: int, rounds: int, log) -> dict:
    """{app: [(median, worst, wait median, wait max, cpu, failed) per round]}."""
    sessions: dict[str, list] = {}
    for name, app in apps.items():
        sessions[name] = []
        await open_sessions(app.url, sessions[name], level)
    await asyncio.sleep(3)  # let the sessions settle
    for name, app in apps.items():  # warm-up: the first answer imports and builds the client
        await stream_level(sessions[name][:1], [app.proc.pid], TOKENS, 120, first_index=1000)
    out: dict[str, list] = {name: [] for name in apps}
    try:
        for r in range(rounds):
            for name in list(apps) if r % 2 == 0 else list(apps)[::-1]:
                fake.reset()
                fake.set_script(script)
                pid = apps[name].proc.pid
                lv = await stream_level(sessions[name], [pid], TOKENS, 180, 100 * (r + 1))
                row = level_row(level, TOKENS, [a.record() for a in lv.answers], lv.cpu[0], 0,
                                lv.peak[0])  # fmt: skip
                wait = _match(fake, lv.answers, TOKENS)["pre_request"]
                rec = (row.median_fraction, row.worst_fraction, wait[0], wait[1], lv.cpu[0],
                       row.failed)  # fmt: skip
                out[name].append(rec)
                log(f"round {r + 1} {name}: " + ", ".join(
                    f"{c} {v:.3f}" if isinstance(v, float) and v < 2 else f"{c} {v:.0f}"
                    for c, v in zip(COLUMNS, rec, strict=True)))  # fmt: skip
                await asyncio.sleep(2)
    finally:
        for s in sum(sessions.values(), []):
            await s.close()
    return out


def markdown(results: dict, level: int, rounds: int, before: Path) -> list[str]:
    lines = [
        f"Everyone presses Enter at once: {level} sessions per app, {rounds} rounds alternating, "
        f"{TOKENS} tokens at 100 tokens/s, 4 per chunk; before = `{before}`; medians over the "
        "rounds",
        "",
        "| app | " + " | ".join(COLUMNS) + " |",
        "|---|" + "---:|" * len(COLUMNS),
    ]
    for name, recs in results.items():
        cells = []
        for i in range(len(COLUMNS)):
            values = [r[i] for r in recs if r[i] is not None]
            med = statistics.median(values) if values else float("nan")
            cells.append(f"{med:.3f}" if i < 2 else f"{med:.0f}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", "Machine: " + ", ".join(f"{k} {v}" for k, v in machine().items())]
    return lines


def main(argv: list[str] | None = None) -> int:
    from tests.fakes.openai_server import spawn_fake_openai

    ap = argparse.ArgumentParser(prog="python -m bench.burst", description=__doc__)
    ap.add_argument("--before", type=Path, required=True, help="a checkout of the code before")
    ap.add_argument("--level", type=int, default=48)
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--out", type=Path, help="also write the Markdown here")
    args = ap.parse_args(argv)

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    with spawn_fake_openai("--model", "fake-chat", "--max-model-len", str(MAX_MODEL_LEN)) as fake:
        script = bench_script(TOKENS, stream_interval=4)
        fake.set_script(script)
        env = {"LLM_URL": fake.url, "DEFAULT_MAX_TOKENS": str(TOKENS)}
        with streamlit_app(args.before, **env) as before, streamlit_app(**env) as after:
            apps = {"before": before, "after": after}
            results = asyncio.run(_rounds(apps, fake, script, args.level, args.rounds, log))
    emit("\n".join(markdown(results, args.level, args.rounds, args.before)), args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
