"""The status section: what is served, pods, GPU nodes, node pools and vLLM load.

First on the page, so its tables are the first data sent and drawn (bench/RESULTS.md 3b);
the GPU panel (one more read, a chart) comes after the three tables.
The three tables are static HTML (``webapp.ui.html_table``), drawn in the page's first
frames. What is costly to draw or read is shown on demand: a long list's interactive grid
and the pod log (a Kubernetes call per refresh) only while their expanders are open, the
load charts only when switched on. Every read goes through ``webapp.admin.status``.
"""

from __future__ import annotations

import html

import streamlit as st

from webapp.admin import actions
from webapp.admin import status as reads
from webapp.admin.messages import admin_error_message
from webapp.admin.serving import Serving
from webapp.admin.ui.console import Console, age, metrics_history, still_admin
from webapp.admin.ui.gpus import gpu_section
from webapp.cluster.errors import ClusterError, NotFound
from webapp.cluster.inventory import Inventory, PodInfo
from webapp.ui.html_table import html_table, needs_first
from webapp.ui.text import literal

#: Rows of a status table drawn at once; the rest (and sorting, search) in the grid on demand
FIRST_ROWS = 25

_LOG_STYLE = (
    "margin: 0; padding: 0.75rem 1rem; max-height: 28rem; overflow: auto; white-space: pre; "
    "font-size: 0.8rem; line-height: 1.5; border-radius: 0.5rem; "
    "background: rgba(128, 128, 128, 0.08)"
)


def read_status(console: Console, *, served: bool = False) -> reads.Status:
    """What the status tables show, read now (3 Kubernetes lists, 1 GKE list), once per run
    of the tab that shows it (the status view and each of its timed reruns, the deploy
    form); ``served``: also the models the chat endpoint lists (the
    status's headline; up to 2 s while nothing serves)."""
    s = console.settings
    url = s.llm_url if served else None
    return reads.read_status(
        console.cluster, s.k8s_namespace, console.pools, llm_url=url, api_key=console.api_key
    )


def show(console: Console) -> None:
    """The status view, refreshed every ADMIN_STATUS_REFRESH_S seconds on its own."""
    st.fragment(_status, run_every=console.settings.admin_status_refresh_s)(console)


def _status(console: Console) -> None:
    if not still_admin(console):
        return
    status = read_status(console, served=True)
    _serving_line(status.serving(console.settings.k8s_namespace))
    _switch_running(console)
    if console.cluster is None:
        st.caption("No cluster connected: no pods or GPU nodes to show.")
    elif status.inventory is None:
        st.error(admin_error_message(status.cluster_error))
        _pod_log(console, ())
    else:
        _pods_and_nodes(console, status.inventory)
    pools_table(console, status)
    if status.inventory is not None:  # after the three tables: one more read, and a chart
        gpu_section(
            console.settings,
            status.inventory.pods,
            read=lambda: reads.read_gpus(console.settings, console.cluster),
        )
    _load(console)


def _switch_running(console: Console) -> None:
    """A model switch under way, in one line: its progress and Cancel are on the Models tab."""
    job = console.registry.current(actions.SWITCH.kind)
    if job is None or not job.running:
        return
    view = job.view()
    detail: actions.SwitchDetail = view.detail
    st.info(
        literal(f"A switch to {detail.model_after} is under way (started by {view.actor}). "
                "Its progress and Cancel are on the Models tab."),
        icon=":material/hourglass_top:",
    )  # fmt: skip


def _serving_line(line: Serving) -> None:
    icon = {"ok": ":material/check_circle:", "warning": ":material/warning:"}
    draw = {"ok": st.success, "warning": st.warning}.get(line.level, st.info)
    draw(literal(line.text), icon=icon.get(line.level, ":material/info:"))


def _pods_and_nodes(console: Console, inv: Inventory) -> None:
    namespace = console.settings.k8s_namespace
    st.subheader(f"Pods in {namespace}")
    if not inv.pods:
        st.caption("No pods.")
    else:
        rows = []
        for p in inv.pods:
            recent = "; ".join(f"{e.reason}: {e.message}" for e in p.events[:2])
            rows.append(
                {"pod": p.name, "phase": p.phase, "ready": p.ready, "restarts": p.restarts,
                 "node": p.node, "age": age(p.age_s), "model": p.model,
                 "reason": f"{p.reason} {p.message}".strip(), "recent events": recent}
            )  # fmt: skip
        _status_table(rows, key="pods", noun="pods")
    _pod_log(console, inv.pods)
    st.subheader("GPU nodes")
    if not inv.nodes:
        st.caption("No GPU nodes right now (the pool may be scaled to zero).")
        return
    _status_table(
        [
            {"node": n.name, "pool": n.pool, "accelerator": n.accelerator, "spot": n.spot,
             "ready": n.ready, "GPUs capacity": n.gpu_capacity,
             "allocatable": n.gpu_allocatable, "requested": n.gpu_requested}
            for n in inv.nodes
        ],
        key="nodes", noun="GPU nodes",
    )  # fmt: skip
    st.caption(
        f"requested: GPUs asked for by pods of {literal(namespace)}. The "
        "console may list pods of its own namespace only, so GPUs held by other "
        "namespaces' pods are not counted."
    )


def _pod_log(console: Console, pods: tuple[PodInfo, ...] | list[PodInfo]) -> None:
    """A pod's last log lines, read (one Kubernetes call per status refresh) and drawn only
    while the expander is open. The choice starts at, and after a switch follows, the
    newest vLLM pod (``status.log_pod``): a kept choice whose pod is gone falls back to it.

    Drawn in every status run with a cluster, pods or not: Streamlit forgets the state of a
    widget that a run leaves out, so the expander would close when a switch briefly leaves
    the namespace without pods or a read fails."""
    box = st.expander("Pod log", key="pod_log", icon=":material/article:", on_change="rerun")
    if not box.open:
        return
    if not pods:
        box.caption("No pods to show the log of.")
        return
    names = [p.name for p in pods]
    assert console.cluster is not None
    with box:
        first = names.index(reads.log_pod(pods))  # type: ignore[arg-type]
        pod = st.selectbox("Log of pod", names, index=first, key="log_pod")
        try:
            lines = reads.pod_log(console.cluster, console.settings.k8s_namespace, pod)
        except NotFound:
            st.caption(f"Pod {pod} is gone (replaced since this list was read).")
            return
        except ClusterError as exc:
            st.caption(admin_error_message(exc))
            return
        # plain <pre>: monospace like st.code without its syntax highlighter, which took
        # ~0.65 s more to show 50 lines in Chromium here (st.text is not monospace)
        text = html.escape("\n".join(lines) or "(no log lines yet)")
        st.html(f'<pre style="{_LOG_STYLE}">{text}</pre>')


def pools_table(console: Console, status: reads.Status) -> None:
    """The node pools with their machines, GPUs, live node counts and autoscaling."""
    st.subheader("Node pools")
    if console.pools is None:
        st.info(console.pools_problem)
        return
    if status.pools is None:
        st.error(admin_error_message(status.pools_error))
        return
    _status_table(
        [
            {"pool": p.name, "machine type": p.machine_type,
             "accelerator": f"{p.accelerator_count} x {p.accelerator_type}" if p.has_gpus else "",
             "nodes": p.node_count,
             "autoscaling": f"{p.min_nodes}..{p.max_nodes}" if p.autoscaling_enabled else "off",
             "spot": p.spot, "status": p.status}
            for p in status.pools
        ],
        key="pools", noun="node pools",
    )  # fmt: skip


def _status_table(rows: list[dict], *, key: str, noun: str) -> None:
    """A static table of the first ``FIRST_ROWS`` rows, not-ready ones first: cheap to draw
    at a page open (a data grid took ~0.8 s more in Chromium, bench/RESULTS.md 3b). A longer
    list also gets the interactive grid of all rows, built only while its expander is open
    (its label has no count: a label that changes would close it on the next refresh)."""
    ready = bool(rows) and "ready" in rows[0]
    ordered = needs_first(rows) if ready else rows
    long = len(rows) > FIRST_ROWS
    note = f"The first {FIRST_ROWS} of {len(rows)} {noun}" if long else ""
    if long and ready:
        note += ", those not ready first"
    st.html(
        html_table(ordered[:FIRST_ROWS], name=key, total=len(rows),
                   attention="ready" if ready else None, note=note + ("." if note else ""))
    )  # fmt: skip
    if not long:
        return
    box = st.expander(f"Show all {noun}", key=f"{key}_all", on_change="rerun")
    if box.open:
        box.dataframe(ordered, key=key, hide_index=True)


def _load(console: Console) -> None:
    st.subheader("vLLM load")
    url = console.settings.llm_url
    history = metrics_history(url)
    problem = reads.sample_load(history, url, console.api_key)
    if problem is not None:
        st.caption(admin_error_message(problem))
    snap = history.latest()
    if snap is None:
        return
    c = st.columns(4)
    c[0].metric("Running", f"{snap.num_requests_running:g}")
    c[1].metric("Waiting", f"{snap.num_requests_waiting:g}")
    kv = "n/a" if snap.kv_cache_usage is None else f"{snap.kv_cache_usage:.0%}"
    c[2].metric("KV cache", kv)
    p50 = snap.ttft_p50_s
    c[3].metric("TTFT p50", "n/a" if p50 is None else f"{p50 * 1000:.0f} ms")
    # the charts cost the browser more than the tables (Vega); drawn when asked
    if st.toggle("Show load charts", key="load_charts"):
        _load_charts(history)


def _load_charts(history) -> None:
    points = history.points()
    if len(points) < 2:
        st.caption("The charts start with the next sample (every status refresh).")
        return
    t0 = points[-1].taken_at
    rows = [
        {"seconds ago": round(p.taken_at - t0), "running": p.running, "waiting": p.waiting,
         "KV cache %": (p.kv_cache_usage or 0) * 100}
        for p in points
    ]  # fmt: skip
    left, right = st.columns(2)
    left.line_chart(rows, x="seconds ago", y=["running", "waiting"], height=180)
    right.line_chart(rows, x="seconds ago", y="KV cache %", height=180)
