"""``python -m bench.goals``: issue 12's chat-tier goals as before (N=1) and as shipped (N=4).

The manifests and the admin's deploy form run vLLM with ``--stream-interval=4`` (4 tokens per
SSE chunk); the recorded parts ran the scripted fake at 1. This driver measures the issue's
goal rows at every N in one run on the same machine, with the parts' own functions:

- part 2b (``bench.ws_sessions.run``): 32 and 48 protocol-client sessions at once against one
  app process, 512-token answers at 100 tokens/s; each (N, repeat) a fresh fake and app,
  repeats alternate the Ns (N=1, N=4, N=1, …) so drift in the machine's load hits both;
- part 1 (``bench.streaming.run_cases``): one Chromium user, app against the ``openai``
  client, 256 tokens at 200 tokens/s and 4096 at 1000 tokens/s, medians of ``--runs``.

Then one table "goal | target | N=1 | N=4 | met?" and how busy the whole machine was (% of
all cores, from /proc/stat) during each phase: on a shared box the app gets less than a
core and the rows say so. Not part of ``make test``: the numbers depend on the machine.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench.common import busy_percent, emit, machine, machine_jiffies, median
from bench.tables import at_least, at_most, num

#: the issue's levels (sessions at once) and their targets
MEDIAN_TARGETS = {32: 0.90, 48: 0.85}
WORST_TARGETS = {32: 0.75}
#: part 1: first-token overhead (app − direct) and last token / direct, at every case
OVERHEAD_MS = 30.0
LAST_RATIO = 1.03
CASES = [(256, 200.0), (4096, 1000.0)]
LEVELS = [32, 48]
TOKENS = 512  # part 2b's answers


@dataclass
class GoalsResult:
    """Per N: the 2b results (one per repeat) and part 1's rows; the machine's busy share
    per phase (% of all cores) and the run's wall time."""

    intervals: list[int]
    ws: dict[int, list] = field(default_factory=dict)  # N -> [WsResult, ...]
    stream: dict[int, list] = field(default_factory=dict)  # N -> [StreamRow, ...]
    busy: dict[str, float] = field(default_factory=dict)
    elapsed_s: float = 0.0
    machine: dict[str, str] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)  # measurements that failed (run went on)


@dataclass
class GoalRow:
    """One goal: its values per N (one per repeat) and the limit they are held to
    (``None``: shown for information, no verdict)."""

    goal: str
    target: str
    limit: float | None
    higher_is_better: bool
    values: dict[int, list[float]]
    fmt: str = ".3f"

    def value(self, n: int) -> float | None:
        """The value judged: the median over the repeats."""
        return median(self.values.get(n, []))

    def verdict(self, n: int) -> str:
        if self.limit is None:
            return "—"
        check = at_least if self.higher_is_better else at_most
        return check(self.value(n), self.limit)

    def cell(self, n: int) -> str:
        vals = self.values.get(n, [])
        text = num(self.value(n), self.fmt)
        if len(vals) > 1:
            text += f" ({format(min(vals), self.fmt)}–{format(max(vals), self.fmt)})"
        return text


# ---------------------------------------------------------------- rows (pure)
def _level_values(ws_runs: list, level: int, attr: str) -> list[float]:
    out = []
    for res in ws_runs:
        for row in res.rows:
            v = getattr(row, attr) if row.sessions == level else None
            if v is not None:
                out.append(v)
    return out


def session_goals(res: GoalsResult) -> list[GoalRow]:
    """Part 2b's goal rows: median and worst delivered fraction, and the app's CPU, per level."""
    levels = sorted({r.sessions for runs in res.ws.values() for ws in runs for r in ws.rows})
    rows = []
    for level in levels:
        per_n = {n: res.ws.get(n, []) for n in res.intervals}
        med, worst = MEDIAN_TARGETS.get(level), WORST_TARGETS.get(level)
        rows.append(GoalRow(
            f"{level} sessions @100 tok/s: median fraction of backend rate",
            "—" if med is None else f"≥ {med:.2f}", med, True,
            {n: _level_values(w, level, "median_fraction") for n, w in per_n.items()},
        ))  # fmt: skip
        rows.append(GoalRow(
            f"{level} sessions: worst session", "—" if worst is None else f"≥ {worst:.2f}",
            worst, True,
            {n: _level_values(w, level, "worst_fraction") for n, w in per_n.items()},
        ))  # fmt: skip
        rows.append(GoalRow(
            f"{level} sessions: app CPU (% of a core)", "—", None, False,
            {n: _level_values(w, level, "cpu_percent") for n, w in per_n.items()}, ".0f",
        ))  # fmt: skip
    return rows


def stream_goals(res: GoalsResult) -> list[GoalRow]:
    """Part 1's goal rows: first-token overhead and last-token ratio per (tokens, rate) case."""
    cases = sorted({(r.tokens, r.rate) for rows in res.stream.values() for r in rows})
    out = []
    for tokens, rate in cases:

        def of(n: int, attr: str, tokens=tokens, rate=rate) -> list[float]:
            rows = [r for r in res.stream.get(n, []) if (r.tokens, r.rate) == (tokens, rate)]
            return [v for r in rows if (v := getattr(r, attr)) is not None]

        label = f"{tokens} tokens @{rate:g} tok/s"
        out.append(GoalRow(
            f"{label}: first-token overhead, app − direct (ms)", f"≤ {OVERHEAD_MS:.0f}",
            OVERHEAD_MS, False, {n: of(n, "first_delta_ms") for n in res.intervals}, ".0f",
        ))  # fmt: skip
        out.append(GoalRow(
            f"{label}: last token, app / direct", f"≤ {LAST_RATIO:.2f}", LAST_RATIO, False,
            {n: of(n, "last_ratio") for n in res.intervals},
        ))  # fmt: skip
    return out


def goals_table(rows: list[GoalRow], intervals: list[int]) -> list[str]:
    """The Markdown table: goal | target | N=… | met? (one verdict per N)."""
    head = " | ".join(f"N={n}" for n in intervals)
    out = [f"| goal | target | {head} | met? |", "|---|---|" + "---:|" * len(intervals) + "---|"]
    for r in rows:
        cells = " | ".join(r.cell(n) for n in intervals)
        met = "—" if r.limit is None else " · ".join(f"N={n} {r.verdict(n)}" for n in intervals)
        out.append(f"| {r.goal} | {r.target} | {cells} | {met} |")
    return out


def markdown(res: GoalsResult) -> list[str]:
    """The goals section: table, then the machine and how busy it was."""
    m = res.machine
    out = [
        f"### Issue 12 goals at --stream-interval {', '.join(map(str, res.intervals))}"
        f" ({m.get('date', '')})",
        "",
        *goals_table([*session_goals(res), *stream_goals(res)], res.intervals),
        "",
        "Values: the median over the repeats (range in brackets); sessions rows from part 2b"
        " (protocol clients, one app process), the others from part 1 (Chromium, one user).",
        "",
        f"Machine: {m.get('cpu', '?')}, {m.get('cores', '?')} cores, {m.get('ram', '?')};"
        f" load average at start {m.get('loadavg at start', '?')}; run {res.elapsed_s:.0f} s.",
        "Busy share of all cores (everything on the machine, this run included): "
        + ", ".join(f"{k} {v:.0f} %" for k, v in res.busy.items())
        + ".",
    ]
    failed = {
        n: sum(r.failed for ws in runs for r in ws.rows) for n, runs in res.ws.items()
    }  # fmt: skip
    if any(failed.values()):
        out.append(f"Failed sessions (2b): {failed}.")
    out += [f"Measurement failed (its cells read —): `{e}`" for e in res.errors]
    return [*out, ""]


# ---------------------------------------------------------------- the run
def run(
    intervals: list[int],
    log,
    levels: list[int] = LEVELS,
    tokens: int = TOKENS,
    cases: list[tuple[int, float]] = CASES,
    runs: int = 5,
    ws_runs: int = 3,
) -> GoalsResult:
    """2b at every N, ``ws_runs`` times (the Ns alternating), then part 1 at every N."""
    from bench import streaming, ws_sessions
    from bench.common import chromium

    res = GoalsResult(intervals, machine=machine())
    started, m0 = time.monotonic(), machine_jiffies()
    for rep in range(ws_runs):
        for n in intervals:
            log(f"2b, N={n}, repeat {rep + 1}/{ws_runs}: {levels} sessions, {tokens} tokens")
            runs_n = res.ws.setdefault(n, [])
            try:
                runs_n.append(ws_sessions.run(levels, tokens, log, stream_interval=n))
            except Exception as e:  # noqa: BLE001 - report it, go on with the other runs
                res.errors.append(f"2b N={n} repeat {rep + 1}: {type(e).__name__}: {e}")
                log(f"  failed: {res.errors[-1]}")
    m1 = machine_jiffies()
    res.busy["part 2b"] = busy_percent(m0, m1)
    with chromium() as browser:
        for n in intervals:
            log(f"1, N={n}: {cases} (tokens, tokens/s), {runs} runs each")
            try:
                res.stream[n] = streaming.run_cases(browser, cases, runs, log, n)
            except Exception as e:  # noqa: BLE001 - report it, go on with the other N
                res.errors.append(f"part 1 N={n}: {type(e).__name__}: {e}")
                log(f"  failed: {res.errors[-1]}")
    m2 = machine_jiffies()
    res.busy["part 1"] = busy_percent(m1, m2)
    res.busy["whole run"] = busy_percent(m0, m2)
    res.elapsed_s = time.monotonic() - started
    return res


def _case(text: str) -> tuple[int, float]:
    tokens, _, rate = text.partition("@")
    return int(tokens), float(rate or 100)


def main(argv: list[str] | None = None) -> int:
    """``python -m bench.goals [--stream-interval 1 4] [--runs 5] [--ws-runs 3] [--out FILE]``
    (``--levels``, ``--tokens``, ``--cases`` shrink it for a smoke check)."""
    import argparse

    ap = argparse.ArgumentParser(prog="python -m bench.goals", description=__doc__)
    ap.add_argument("--stream-interval", type=int, nargs="+", default=[1, 4], metavar="N")
    ap.add_argument("--runs", type=int, default=5, help="part 1: runs per case and N")
    ap.add_argument("--ws-runs", type=int, default=3, help="part 2b: repeats per N")
    ap.add_argument("--levels", type=int, nargs="+", default=LEVELS, help="2b sessions")
    ap.add_argument("--tokens", type=int, default=TOKENS, help="2b tokens per answer")
    ap.add_argument(
        "--cases", type=_case, nargs="+", default=CASES, metavar="TOKENS@RATE",
        help="part 1 cases (default 256@200 4096@1000)",
    )  # fmt: skip
    ap.add_argument("--out", type=Path, help="also write the Markdown here")
    args = ap.parse_args(argv)

    def log(msg: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)

    res = run(
        args.stream_interval, log, args.levels, args.tokens, args.cases, args.runs, args.ws_runs
    )
    text = "\n".join(markdown(res))
    emit(text, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
