"""Turn the collected results into Markdown tables and the PNG summary."""

from __future__ import annotations

from pathlib import Path

from bench.plot import write_png


def _ok(good: bool | None) -> str:
    return "—" if good is None else ("yes" if good else "**no**")


def _f(v: float | None, fmt: str = ".3f") -> str:
    return "—" if v is None else format(v, fmt)


def stream_table(rows) -> list[str]:
    out = [
        "| backend | tokens | runs | direct first (s) | app first (s) | app − direct first (ms)"
        " | first ≤ +50 ms | direct last (s) | app last (s) | app/direct last | target"
        " | last met |",
        "|---|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        delta, ratio = r.first_delta_ms, r.last_ratio
        tokens = f"{r.tokens}" + (f" ({r.produced} produced)" if r.produced else "")
        out.append(
            f"| {r.backend} | {tokens} | {r.runs} | {_f(r.med('direct_first'))} "
            f"| {_f(r.med('app_first'))} | {_f(delta, '.0f')} "
            f"| {_ok(None if delta is None else delta <= 50)} | {_f(r.med('direct_last'))} "
            f"| {_f(r.med('app_last'))} | {_f(ratio)} | ≤ {r.last_target:.2f} "
            f"| {_ok(None if ratio is None else ratio <= r.last_target)} |"
        )
    return out


def concurrency_table(rows, idle: dict[int, float]) -> list[str]:
    from bench.common import median
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
            f"| {r.sessions} | {r.tokens} | {_f(med)} | {_f(r.worst_fraction)} "
            f"| ≥ {r.target:.2f} | {_ok(None if med is None else med >= r.target)} "
            f"| {_f(median(r.first_s))} "
            f"| {r.cpu_percent:.0f} | {r.rss_idle_mb:.1f} | {r.rss_peak_mb:.1f} | {r.failed} |"
        )
    per = rss_per_idle_session(idle)
    levels = ", ".join(f"{k}: {v:.1f} MB" for k, v in sorted(idle.items()))
    out += [
        "",
        f"App RSS with N idle sessions open: {levels}. RSS per extra idle session: "
        f"**{_f(per, '.2f')} MB** (target ≤ 10 MB: {_ok(None if per is None else per <= 10)}).",
    ]
    return out


def status_table(rows) -> list[str]:
    out = [
        "| what | GPU nodes | pods | median (ms) | max (ms) | ≤ 1 s | API calls per refresh |",
        "|---|---:|---:|---:|---:|---|---|",
    ]
    for r in rows:
        calls = ", ".join(f"{k}: {v}" for k, v in r.calls.items())
        out.append(
            f"| {r.view} | {r.nodes} | {r.pods} | {r.median_s * 1000:.0f} | {r.max_s * 1000:.0f} "
            f"| {_ok(r.max_s <= 1.0)} | {r.total_calls} ({calls}) |"
        )
    return out


def switch_table(rows) -> list[str]:
    out = [
        "| poll interval (s) | runs | outcome | new pod Ready → switch done, median (s) | max (s)"
        " | ≤ 3 s | whole switch, median (s) |",
        "|---:|---:|---|---:|---:|---|---:|",
    ]
    from bench.common import median

    for r in rows:
        mx = max(r.overheads) if r.overheads else None
        out.append(
            f"| {r.poll_s} | {len(r.overheads)} | {r.outcome} | {_f(r.median_s, '.2f')} "
            f"| {_f(mx, '.2f')} | {_ok(None if mx is None else mx <= 3)} "
            f"| {_f(median(r.totals), '.2f')} |"
        )
    return out


def markdown(res: dict) -> str:
    """The whole report as Markdown (machine, then one table per part that ran)."""
    m = res["machine"]
    lines = [f"## Benchmark run ({'quick' if res['quick'] else 'full'}), {m['date']}", ""]
    lines += [f"- **{k}**: {v}" for k, v in m.items() if k != "date"]
    lines += [f"- **elapsed**: {res.get('elapsed_s', 0):.0f} s", ""]
    rows = list(res.get("stream", []))
    if res.get("stream_vllm"):
        rows.append(res["stream_vllm"])
    if rows:
        lines += ["### 1. Streaming overhead, one user (medians)", "", *stream_table(rows), ""]
    if res.get("stream_vllm_error"):
        lines += [f"Real vLLM row failed: `{res['stream_vllm_error']}`", ""]
    if res.get("concurrency"):
        lines += ["### 2. Concurrency", ""]
        lines += [*concurrency_table(res["concurrency"], res["idle_rss"]), ""]
    if res.get("status"):
        lines += ["### 3. Admin status at scale", "", *status_table(res["status"]), ""]
    if res.get("switch"):
        lines += ["### 4. Model switch overhead (module level)", "", *switch_table(res["switch"])]
        lines += [""]
    return "\n".join(lines)


def png(res: dict, path: Path) -> Path:
    """Bars relative to each target (1.0 = exactly at target; lower is better)."""
    p1 = []
    for r in [*res.get("stream", []), *([res["stream_vllm"]] if res.get("stream_vllm") else [])]:
        tag = "vLLM " if r.backend != "fake" else ""
        if r.first_delta_ms is not None:
            d = r.med("direct_first") or 0
            rel = (r.med("app_first") or 0) / (d + 0.05) if d else 0
            p1.append((f"{tag}{r.tokens} first", rel, f"+{r.first_delta_ms:.0f} ms"))
        if r.last_ratio is not None:
            p1.append(
                (f"{tag}{r.tokens} last", r.last_ratio / r.last_target, f"x{r.last_ratio:.3f}")
            )
    p2 = []
    for r in res.get("concurrency", []):
        if r.median_fraction:
            p2.append(
                (f"{r.sessions} sessions", r.target / r.median_fraction, f"{r.median_fraction:.2f}")
            )
    p3 = [
        (
            f"{r.nodes}n/{r.pods}p\n{r.view.replace('admin_service.', '')}",
            r.max_s / 1.0,
            f"{r.max_s * 1000:.0f} ms, {r.total_calls} calls",
        )
        for r in res.get("status", [])
    ]  # noqa: E501
    p4 = [
        (f"poll {r.poll_s} s", max(r.overheads) / 3.0, f"{max(r.overheads):.2f} s")
        for r in res.get("switch", [])
        if r.overheads
    ]  # noqa: E501
    panels = [
        (
            "1. Streaming: app time / allowed time (first: direct+50 ms; last: direct x 1.05/1.10)",
            p1,
        ),
        ("2. Concurrency: target / delivered fraction of backend rate", p2),
        ("3. Admin status refresh, 50 GPU nodes / 300 pods: time / 1 s", p3),
        ("4. Model switch: new pod Ready -> done, / 3 s", p4),
    ]
    return write_png(path, panels)
