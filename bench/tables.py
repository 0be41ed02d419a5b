"""Markdown table pieces shared by the report and the parts that write their own section.

``bench.report`` (the whole report) and ``bench.ws_sessions`` (part 2b) both draw the
concurrency table; it lives here so neither imports the other's module for it.
"""

from __future__ import annotations

from bench.common import median


def ok(good: bool | None) -> str:
    return "—" if good is None else ("yes" if good else "**no**")


def at_most(v: float | None, limit: float) -> str:
    """``yes``/``**no**`` for a value against an upper target; ``—`` when not measured."""
    return ok(None if v is None else v <= limit)


def at_least(v: float | None, limit: float) -> str:
    """``yes``/``**no**`` for a value against a lower target; ``—`` when not measured."""
    return ok(None if v is None else v >= limit)


def num(v: float | None, fmt: str = ".3f") -> str:
    return "—" if v is None else format(v, fmt)


def concurrency_table(rows, idle: dict[int, float]) -> list[str]:
    from bench.concurrency import rss_per_idle_session

    out = [
        "| sessions | tokens each | median fraction of backend rate | worst | target"
        " | met | median first token (s) | app CPU (% of a core) | app RSS idle (MB)"
        " | app RSS peak (MB) | failed |",
        "|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        med = r.median_fraction
        out.append(
            f"| {r.sessions} | {r.tokens} | {num(med)} | {num(r.worst_fraction)} "
            f"| ≥ {r.target:.2f} | {at_least(med, r.target)} "
            f"| {num(median(r.first_s))} "
            f"| {r.cpu_percent:.0f} | {r.rss_idle_mb:.1f} | {r.rss_peak_mb:.1f} | {r.failed} |"
        )
    per = rss_per_idle_session(idle)
    levels = ", ".join(f"{k}: {v:.1f} MB" for k, v in sorted(idle.items()))
    out += [
        "",
        f"App RSS with N idle sessions open: {levels}. RSS per extra idle session: "
        f"**{num(per, '.2f')} MB** (target ≤ 10 MB: {at_most(per, 10)}).",
    ]
    return out
