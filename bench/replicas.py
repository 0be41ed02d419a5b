"""Part 2d: do two replicas behind the proxy carry twice the sessions of one? (issue 12 goal)

The goal: "two replicas behind the proxy carry twice the sessions of one at the same
delivered rate (within 10 %), measured with the protocol-level client". Everything but the
number of app processes stays as in production and as in part 2b:

- one scripted fake OpenAI server process (``tests.fakes.openai_server``), answers of
  ``--tokens`` tokens at 100 tokens/s, ``--stream-interval`` tokens per SSE chunk (vLLM's
  flag; default 1, the manifests ship 4), shared by every app process;
- one PostgreSQL (``DATABASE_URL_TEST`` or 127.0.0.1:5432/test, a fresh schema dropped
  afterwards) that every app process shares, migrated once before they start, with the
  manifests' pool per process (``DATABASE_POOL_SIZE`` 5 + ``DATABASE_MAX_OVERFLOW`` 5);
- the sessions are ``bench.ws_sessions``' protocol clients (``open_sessions`` /
  ``stream_level``), every one another client address, all asking at once.

Per level N: N sessions against ONE app process directly (as behind GKE's load balancer),
then 2N sessions against TWO app processes behind HAProxy (``tests.support.haproxy``, the
sticky config the failover e2e test runs: round robin, an inserted affinity cookie the
sessions send back like a browser, WebSocket tunnelled). Fractions come from
``bench.concurrency.level_row`` (what the backend needs for the answer / Enter -> last
token). Verdict per N: median fraction with two replicas at 2N divided by the median with
one at N; the goal is ≥ 0.90. Each process streams its sessions on its own core only if the
machine has the cores: read the "machine busy" column before reading the verdict.
"""

from __future__ import annotations

import asyncio
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from bench.common import add_stream_interval, median, streamlit_app
from bench.concurrency import ConcurrencyRow, level_row
from bench.streaming import MAX_MODEL_LEN, RATE, TTFT_S, bench_script
from bench.tables import at_least, num
from bench.ws_sessions import client_headers, open_sessions, stream_level
from tests.support.streamlit_ws import nth_client

#: the manifests' PostgreSQL pool per chat pod (k8s/base/webapp-chat.yaml)
POOL_ENV = {"DATABASE_POOL_SIZE": "5", "DATABASE_MAX_OVERFLOW": "5"}
#: two replicas at 2N must deliver at least this share of one replica's median at N
GOAL = 0.90


@dataclass
class ReplicaRow:
    """One level on one layout: the sessions' row (``bench.concurrency``), and per app
    process its CPU (% of one core) and how many sessions it carried."""

    replicas: int
    row: ConcurrencyRow
    cpu: list[float]
    per_replica: list[int]
    machine_busy: float
    errors: list[str] = field(default_factory=list)


@dataclass
class ReplicasResult:
    """Rows in pairs (one replica at N, two at 2N), or why the part could not run."""

    tokens: int
    rows: list[ReplicaRow] = field(default_factory=list)
    skipped: str | None = None
    interval: int = 1  # tokens per SSE chunk from the fake (vLLM's --stream-interval)

    def pairs(self) -> list[tuple[ReplicaRow, ReplicaRow]]:
        """(one replica at N, two replicas at 2N) for every N measured on both layouts."""
        ones = {r.row.sessions: r for r in self.rows if r.replicas == 1}
        twos = {r.row.sessions: r for r in self.rows if r.replicas == 2}
        return [(ones[n], twos[2 * n]) for n in sorted(ones) if 2 * n in twos]


def rate_ratio(one: ReplicaRow, two: ReplicaRow) -> float | None:
    """Two replicas' median fraction at 2N over one replica's at N; None if either is
    missing (every session failed)."""
    a, b = one.row.median_fraction, two.row.median_fraction
    return None if not a or b is None else b / a


def unavailable() -> str | None:
    """Why the part cannot run here (no PostgreSQL, no haproxy), or None."""
    from tests.store.backends import postgres_unavailable
    from tests.support.haproxy import haproxy_binary

    if haproxy_binary() is None:
        return "haproxy is not installed (apt-get install -y haproxy)"
    return postgres_unavailable()


def proxied_headers(i: int) -> dict[str, str]:
    """Session ``i`` behind HAProxy: it sends its client address itself, and HAProxy
    (``option forwardfor``) appends the address it got the request from, where GKE's load
    balancer appends its own: with one trusted hop the app keys the client by the left
    entry, as in the failover e2e test."""
    return {"X-Forwarded-For": nth_client(i)}


# ---------------------------------------------------------------- measuring
async def _measure(url, pids, names, levels, per_level, headers, fake, script, n, log):
    """Open the sessions, warm every process, stream each level; rows for ``len(pids)``
    replicas. ``names``: the affinity cookie value of each process (None: direct)."""
    from tests.support.haproxy import COOKIE

    sessions: list = []
    timeout = TTFT_S + n / RATE * 6 + 60
    rows = []
    try:
        await open_sessions(url, sessions, per_level * max(levels), headers)

        def replica_of(s) -> str | None:
            return s.cookies.get(COOKIE) if names[0] else None

        # warm-up: a process's first answer imports and builds the LLM client
        warm = [next((s for s in sessions if replica_of(s) == name), None) for name in names]
        if None in warm:
            missing = [name for name, s in zip(names, warm, strict=True) if s is None]
            raise RuntimeError(f"the proxy sent no session to replica(s) {missing}")
        await stream_level(warm, pids, n, timeout, first_index=100_000 * len(pids))
        for level in levels:
            fake.reset()  # forget recorded requests (and the script: set it again)
            fake.set_script(script)
            count = per_level * level
            lv = await stream_level(
                sessions[:count], pids, n, timeout, first_index=100_000 * len(pids) + 100 * count
            )
            rec = [a.record() for a in lv.answers]
            row = level_row(count, n, rec, max(lv.cpu), 0.0, max(lv.peak))
            per = [sum(replica_of(s) == name for s in sessions[:count]) for name in names]
            errors = [a.error for a in lv.answers if a.error]
            rows.append(ReplicaRow(len(pids), row, lv.cpu, per, lv.other["machine_busy"], errors))
            for err in errors:
                log(f"     FAILED session: {err}")
            log(
                f"  {count:>2} sessions on {len(pids)} replica(s) {per}: median "
                f"{num(row.median_fraction)} worst {num(row.worst_fraction)} of backend rate, "
                f"app CPU {[round(c) for c in lv.cpu]}%, machine "
                f"{lv.other['machine_busy']:.0f}% busy, failed {row.failed}"
            )
    finally:
        for s in sessions:
            await s.close()
    return rows


def _migrated_schema():
    """A fresh PostgreSQL schema, migrated once before the replicas open it (as a rollout's
    migration Job does); a generator: ``next()`` again drops it."""
    from tests.store.backends import _fresh_pg_schema
    from webapp.store import ConversationStore

    schema = _fresh_pg_schema()
    url = next(schema)
    store = ConversationStore(url)
    try:
        store.migrate()
    finally:
        store.dispose()
    return schema, url


def run(levels: list[int], n: int, log, stream_interval: int = 1) -> ReplicasResult:
    """For every N in ``levels``: N sessions on one app process, 2N on two behind HAProxy;
    ``stream_interval``: tokens per SSE chunk from the fake (vLLM's ``--stream-interval``)."""
    from tests.fakes.openai_server import spawn_fake_openai
    from tests.support.haproxy import HAProxy

    reason = unavailable()
    if reason:
        log(f"  skipped: {reason}")
        return ReplicasResult(n, skipped=reason, interval=stream_interval)
    res = ReplicasResult(n, interval=stream_interval)
    levels = sorted(levels)
    schema, database_url = _migrated_schema()
    try:
        with spawn_fake_openai("--model", "fake-chat", "--max-model-len", str(MAX_MODEL_LEN)) as f:
            script = bench_script(n, stream_interval=stream_interval)
            f.set_script(script)
            env = {"LLM_URL": f.url, "DEFAULT_MAX_TOKENS": str(n), "DATABASE_URL": database_url}
            env.update(POOL_ENV)
            log("  one app process, sessions straight at it")
            with streamlit_app(**env) as app:
                pids = [app.proc.pid]
                args = (levels, 1, client_headers, f, script, n, log)
                res.rows += asyncio.run(_measure(app.url, pids, [None], *args))
            log("  two app processes behind HAProxy (sticky)")
            with streamlit_app(**env) as a, streamlit_app(**env) as b:
                tmp = Path(tempfile.mkdtemp(prefix="bench-haproxy-"))
                proxy = HAProxy({"a": a.port, "b": b.port}, tmp).start()
                try:
                    pids = [a.proc.pid, b.proc.pid]
                    args = (levels, 2, proxied_headers, f, script, n, log)
                    res.rows += asyncio.run(_measure(proxy.url, pids, ["a", "b"], *args))
                finally:
                    proxy.stop()
    finally:
        next(schema, None)  # drops the schema
    return res


# ---------------------------------------------------------------- report
def verdicts(res: ReplicasResult) -> list[str]:
    """One line per N: two replicas at 2N against one at N."""
    out = []
    for one, two in res.pairs():
        ratio = rate_ratio(one, two)
        out.append(
            f"Two replicas carry {two.row.sessions} at **{num(ratio)}** of one replica's rate"
            f" at {one.row.sessions} (goal: within 10 %, ≥ {GOAL:.2f}): {at_least(ratio, GOAL)}."
        )
    return out


def markdown_section(res: ReplicasResult) -> list[str]:
    """Part 2d's table and verdicts."""
    out = [
        "### 2d. Two replicas behind the proxy (websocket protocol clients, PostgreSQL,"
        f" --stream-interval {res.interval})",
        "",
    ]
    if res.skipped:
        return [*out, f"Not run: {res.skipped.strip()}", ""]
    out += [
        f"{res.tokens}-token answers at {RATE:.0f} tokens/s from one scripted fake,"
        f" {res.interval} token(s) per SSE chunk (--stream-interval); one"
        " PostgreSQL shared by every process; one replica: sessions straight at it; two:"
        " behind HAProxy with sticky cookies.",
        "",
        "| sessions | replicas | sessions per replica | median fraction of backend rate | worst"
        " | median first token (s) | app CPU per process (% of a core) | machine busy (% of all"
        " cores) | failed |",
        "|---:|---:|---|---:|---:|---:|---|---:|---:|",
    ]
    for r in res.rows:
        per = " / ".join(str(p) for p in r.per_replica) if r.replicas > 1 else "—"
        cpu = " / ".join(f"{c:.0f}" for c in r.cpu)
        out.append(
            f"| {r.row.sessions} | {r.replicas} | {per} | {num(r.row.median_fraction)} "
            f"| {num(r.row.worst_fraction)} | {num(median(r.row.first_s))} | {cpu} "
            f"| {r.machine_busy:.0f} | {r.row.failed} |"
        )
    return [*out, "", *verdicts(res), ""]


def main(argv: list[str] | None = None) -> int:
    """``python -m bench.replicas [--levels 16 32] [--tokens 512] [--stream-interval N ...]``."""
    import argparse
    import sys

    ap = argparse.ArgumentParser(prog="python -m bench.replicas")
    ap.add_argument("--levels", type=int, nargs="+", default=[16, 32], help="N (one replica)")
    ap.add_argument("--tokens", type=int, default=512)
    add_stream_interval(ap)
    args = ap.parse_args(argv)

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    for interval in args.stream_interval:
        res = run(args.levels, args.tokens, log, stream_interval=interval)
        print("\n".join(markdown_section(res)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
