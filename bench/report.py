"""Turn the collected results into Markdown tables and the PNG summary."""

from __future__ import annotations

from pathlib import Path

from bench.common import median
from bench.plot import write_png
from bench.tables import at_most, concurrency_table, num, ok


def stream_table(rows) -> list[str]:
    out = [
        "| backend | tokens | tokens/s | --stream-interval | runs | direct first (s)"
        " | app first (s) | app − direct first (ms) | first ≤ +50 ms | direct last (s)"
        " | app last (s) | app/direct last | target | last met |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        delta, ratio = r.first_delta_ms, r.last_ratio
        tokens = f"{r.tokens}" + (f" ({r.produced} produced)" if r.produced else "")
        out.append(
            f"| {r.backend} | {tokens} | {num(r.rate, 'g')} | {r.interval} | {r.runs} "
            f"| {num(r.med('direct_first'))} "
            f"| {num(r.med('app_first'))} | {num(delta, '.0f')} "
            f"| {at_most(delta, 50)} | {num(r.med('direct_last'))} "
            f"| {num(r.med('app_last'))} | {num(ratio)} | ≤ {r.last_target:.2f} "
            f"| {at_most(ratio, r.last_target)} |"
        )
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
            f"| {ok(r.max_s <= 1.0)} | {r.total_calls} ({calls}) |"
        )
    return out


def page_rows(rows) -> list:
    """The admin-page rows of part 3 in the module-level table's shape (``StatusRow``)."""
    from bench.admin import StatusRow

    out = []
    for r in rows:
        if r.seconds("warm"):
            out.append(
                StatusRow(r.nodes, r.pods, r.seconds("warm"), r.load_calls,
                          "admin page in Chromium: open (whole page run) → 3 tables drawn")
            )  # fmt: skip
        if r.refresh_render_ms:
            out.append(
                StatusRow(r.nodes, r.pods, [v / 1000 for v in r.refresh_render_ms],
                          r.refresh_calls, "admin page in Chromium: 5 s status refresh → drawn")
            )  # fmt: skip
    return out


KINDS = (
    ("cold", "first after app start, empty cache"),
    ("probed", "first after app start and its startup probe (script health check), empty cache"),
    ("before", "returning, the page before the change (`--admin-before REV`)"),
    ("warm", "returning (new tab = new session)"),
    ("alone", "what-if: the 3 tables alone (`bench/status_only_app.py`), returning"),
)


def status_page_table(rows) -> list[str]:
    from bench.admin_browser import calls_text, k8s_lists

    out = [
        "| GPU nodes | pods (rows in vllm) | page load | loads | websocket open (ms)"
        " | status data in (ms) | 3 tables drawn, median (ms) | max (ms) | ≤ 1 s"
        " | whole page drawn, median (ms) |",
        "|---:|---:|---|---:|---:|---:|---:|---:|---|---:|",
    ]
    for r in rows:
        for kind, label in KINDS:
            secs = r.seconds(kind)
            if not secs:
                continue
            out.append(
                f"| {r.nodes} | {r.pods} ({r.rows['pod']}) | {label} | {len(secs)} "
                f"| {num(r.med(kind, None, 'ws_open'), '.0f')} | {num(r.med(kind, None, 'data'), '.0f')} "
                f"| {num(r.med(kind, None, 'tables'), '.0f')} | {max(secs) * 1000:.0f} "
                f"| {ok(max(secs) <= 1.0)} | {num(r.med(kind, None, 'page'), '.0f')} |"
            )
    out += [
        "",
        "Where a returning admin's page-open time goes (medians, ms): page boot = navigation →"
        " Streamlit's websocket open; script = websocket open → its first API request (identity,"
        " clients, and whatever the page runs before its status read); API = first → last"
        " request before the data is in the browser; send = last request → the node pools"
        " table's data in the browser; draw = data in → all three tables drawn.",
        "",
        "| GPU nodes | pods | page | page boot | script | API | send | draw | total |",
        "|---:|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    phases = [(None, "ws_open"), ("ws_open", "api_first"), ("api_first", "api_last"),
              ("api_last", "data"), ("data", "tables"), (None, "tables")]  # fmt: skip
    for r in rows:
        for kind in ("before", "warm", "alone"):
            if r.of(kind):
                cells = " | ".join(num(r.med(kind, a, b), ".0f") for a, b in phases)
                page = {"before": "admin page before", "warm": "admin page"}.get(
                    kind, "3 tables alone (what-if)"
                )
                out.append(f"| {r.nodes} | {r.pods} | {page} | {cells} |")
    out += [
        "",
        "| GPU nodes | pods | status refresh in an open page: first request → new pod row drawn (ms)"
        " | ≤ 1 s | API calls per page load | per 5 s status refresh | list calls per refresh"
        " | same every refresh |",
        "|---:|---:|---:|---|---|---|---:|---|",
    ]
    for r in rows:
        took = median(r.refresh_render_ms) if r.refresh_render_ms else None
        out.append(
            f"| {r.nodes} | {r.pods} | {num(took, '.0f')} | {at_most(took, 1000)} "
            f"| {calls_text(r.load_calls)} | {calls_text(r.refresh_calls)} "
            f"| {k8s_lists(r.refresh_calls)} | {ok(r.refresh_constant)} |"
        )
    return out


def switch_page_table(row) -> list[str]:
    out = [
        "| runs | outcomes | (a) Ready → admin page shows “Now serving”, median (s) | max (s)"
        " | ≤ 3 s | (b) Ready → chat answer from the new model, median (s) | max (s) | ≤ 3 s"
        " | Ready → switch result recorded (s) | Ready → chat Enter (s) | chat hit the old"
        " model first | Deploy click → admin page done (s) |",
        "|---:|---|---:|---:|---|---:|---:|---|---:|---:|---:|---:|",
    ]
    runs = row.runs
    outcomes = ", ".join(sorted({r.outcome for r in runs}))
    a, b = row.worst("admin_done"), row.worst("chat_answer")
    out.append(
        f"| {len(runs)} | {outcomes} | {num(row.med('admin_done'), '.2f')} | {num(a, '.2f')} "
        f"| {at_most(a, 3)} | {num(row.med('chat_answer'), '.2f')} "
        f"| {num(b, '.2f')} | {at_most(b, 3)} "
        f"| {num(row.med('switch_done'), '.2f')} | {num(row.med('enter'), '.2f')} "
        f"| {sum(r.chat_404 for r in runs)} of {len(runs)} | {num(row.med('total'), '.2f')} |"
    )
    return out


def switch_table(rows) -> list[str]:
    out = [
        "| poll interval (s) | runs | outcome | new pod Ready → switch done, median (s) | max (s)"
        " | ≤ 3 s | whole switch, median (s) |",
        "|---:|---:|---|---:|---:|---|---:|",
    ]
    for r in rows:
        mx = max(r.overheads) if r.overheads else None
        out.append(
            f"| {r.poll_s} | {len(r.overheads)} | {r.outcome} | {num(r.median_s, '.2f')} "
            f"| {num(mx, '.2f')} | {at_most(mx, 3)} "
            f"| {num(median(r.totals), '.2f')} |"
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
    for ws in res.get("concurrency_ws", []):  # one per --stream-interval
        from bench.ws_sessions import markdown_section

        lines += markdown_section(ws)
    for rep in res.get("replicas", []):  # one per --stream-interval
        from bench.replicas import markdown_section as replicas_section

        lines += replicas_section(rep)
    if res.get("replicas_error"):
        lines += [f"Replicas rows failed: `{res['replicas_error']}`", ""]
    status_rows = [*res.get("status", []), *page_rows(res.get("status_page", []))]
    if status_rows:
        lines += ["### 3. Admin status at scale", "", *status_table(status_rows), ""]
    if res.get("status_page"):
        lines += ["### 3b. The admin page in Chromium (times from navigation start)", ""]
        lines += [*status_page_table(res["status_page"]), ""]
    if res.get("status_page_error"):
        lines += [f"Admin page rows failed: `{res['status_page_error']}`", ""]
    if res.get("page_profile"):
        nodes, pods = res["page_profile_size"]
        lines += [
            f"### 3c. Browser main thread during an admin page open ({nodes} nodes / {pods} pods)",
            "",
            "V8 CPU profile (DevTools protocol), mean of 3 returning loads; inclusive ms per"
            " script file (a file counts when any of its functions is on the stack, so rows"
            " overlap; `(program)` is the browser's own work: style, layout, paint).",
            "",
            "| script file | ms |",
            "|---|---:|",
            *[f"| {k} | {v:.0f} |" for k, v in list(res["page_profile"].items())[:20]],
            "",
        ]
    if res.get("switch"):
        lines += ["### 4. Model switch overhead (module level)", "", *switch_table(res["switch"])]
        lines += [""]
    if res.get("switch_page"):
        lines += ["### 4b. Model switch from the admin page, chat page following (Chromium)", ""]
        lines += [
            f"New pod Ready {res['switch_page'].ready_delay_s:g} s after it is created; "
            "in-place switches mistral-7b ↔ llama-2-7b.",
            "",
            *switch_page_table(res["switch_page"]),
            "",
        ]
    if res.get("switch_page_error"):
        lines += [f"Switch page rows failed: `{res['switch_page_error']}`", ""]
    return "\n".join(lines)


def _short(view: str) -> str:
    """A bar label for a status row."""
    if view.startswith("admin page"):
        return "page: open" if "open" in view else "page: refresh"
    return view.replace("admin_service.", "").replace(" + gpu_nodes()", " +gpu")


def png(res: dict, path: Path) -> Path:
    """Bars relative to each target (1.0 = exactly at target; lower is better)."""
    p1 = []
    for r in [*res.get("stream", []), *([res["stream_vllm"]] if res.get("stream_vllm") else [])]:
        tag = ("vLLM " if r.backend != "fake" else "") + (
            f"N={r.interval} " if r.interval > 1 else ""
        )
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
    page = page_rows(res.get("status_page", [])[-1:])  # the largest cluster only
    p3 = [
        (
            f"{r.nodes}n/{r.pods}p\n{_short(r.view)}",
            r.max_s / 1.0,
            f"{r.max_s * 1000:.0f} ms, {r.total_calls} calls",
        )
        for r in [*res.get("status", []), *page]
    ]
    p4 = [
        (f"poll {r.poll_s} s", max(r.overheads) / 3.0, f"{max(r.overheads):.2f} s")
        for r in res.get("switch", [])
        if r.overheads
    ]
    sp = res.get("switch_page")
    for attr, label in (("admin_done", "page: admin done"), ("chat_answer", "page: chat answer")):
        worst = sp.worst(attr) if sp else None
        if worst is not None:
            p4.append((label, worst / 3.0, f"{worst:.2f} s"))
    panels = [
        (
            "1. Streaming: app time / allowed time (first: direct+50 ms; last: direct x 1.05/1.10)",
            p1,
        ),
        ("2. Concurrency: target / delivered fraction of backend rate", p2),
        ("3. Admin status (module calls; admin page in Chromium): time / 1 s", p3),
        ("4. Model switch: new pod Ready -> done (module; admin page; chat page), / 3 s", p4),
    ]
    return write_png(path, panels)
