"""Admin page: watch pods, GPUs, node pools and vLLM load; deploy/switch the served model.

The status view comes first, right under the sign-in line, so its tables are the first
data sent and drawn when the page opens (bench/RESULTS.md 3b); the deploy form, node pool
actions and audit log follow. What is costly to draw or read is shown on demand: the pod
log (a Kubernetes call per refresh) only while its expander is open, the load charts
only when switched on.

Thin by design: who may enter comes from ``webapp.access.auth``, every action and read goes
through ``webapp.admin.service``; this file only lays out widgets and turns typed
errors into messages (``admin_messages``). Long work (a switch, a node-pool change)
runs in threads owned by a process-wide ``JobRegistry``, so a rerun or a refresh of
the page never stops it; fragments poll their progress.
"""

from __future__ import annotations

import html
from datetime import UTC, datetime

import streamlit as st

from webapp.access.auth import AdminIdentity
from webapp.access.errors import AdminAccessOff, AuthError, NotAdmin, NotLoggedIn
from webapp.access.ui.identify import access_mode, identify
from webapp.admin import service as svc
from webapp.admin.audit import AuditError, AuditLog
from webapp.admin.catalog import CatalogError, load_catalog
from webapp.admin.sizing import GPUS, SizingError, Verdict
from webapp.admin.ui.messages import admin_error_message, signed_in_line
from webapp.cluster.errors import ClusterError, NotFound
from webapp.cluster.inventory import pod_logs
from webapp.cluster.k8s import Cluster, connect
from webapp.cluster.node_pools import NodePoolError, NodePools
from webapp.cluster.switch import SwitchResult
from webapp.llm.errors import LLMError
from webapp.llm.metrics import MetricsHistory, fetch_metrics
from webapp.llm.server import BackendState, health, list_models
from webapp.settings import get_settings
from webapp.ui.safe_markdown import safe_markdown
from webapp.ui.text import literal

settings = get_settings()
API_KEY = settings.llm_api_key.get_secret_value()


# ---------------------------------------------------------------- process-wide resources


@st.cache_resource(show_spinner=False)
def _registry() -> svc.JobRegistry:
    return svc.JobRegistry(unschedulable_grace_s=settings.switch_unschedulable_grace_s)


@st.cache_resource(show_spinner=False)
def _audit(database_url: str) -> AuditLog:
    return AuditLog.from_url(database_url)


@st.cache_resource(show_spinner=False)
def _cluster(kubeconfig: str) -> Cluster:
    # empty: in-cluster service account, else ~/.kube/config
    return connect(kubeconfig or None)


@st.cache_resource(show_spinner=False)
def _node_pools(project: str, location: str, cluster: str, endpoint: str) -> NodePools:
    return NodePools.from_settings(settings)


@st.cache_resource(show_spinner=False)
def _history(url: str) -> MetricsHistory:
    return MetricsHistory(max_samples=120, window_s=600)


@st.cache_resource(show_spinner=False)
def _catalog():
    return load_catalog()


# ---------------------------------------------------------------- who is this


def _identify() -> AdminIdentity:
    """The verified admin, or a message and ``st.stop()``."""
    mode = access_mode(settings)
    try:
        return identify(settings, mode)
    except AdminAccessOff as exc:
        st.info(str(exc))
    except NotAdmin as exc:
        # the message names the e-mail the identity provider sent: shown as typed
        st.error(
            f"Not allowed: {literal(str(exc))} Ask an administrator to add you to ADMIN_EMAILS."
        )
        if mode == "oidc":
            st.button("Log out", key="logout", on_click=st.logout)
    except NotLoggedIn as exc:
        st.warning(str(exc))
        if mode == "oidc":
            st.button("Log in", key="login", on_click=st.login)
    except AuthError as exc:
        st.error(str(exc))
    if settings.app_mode == "all":  # the chat is served here too: a way back to it
        st.page_link("chat/ui/page.py", label="Back to the chat", icon=":material/chat:")
    st.stop()
    raise AssertionError("unreachable")  # st.stop() raises


def _still_admin() -> bool:
    """Identity checked again in every fragment run: a fragment (status refresh, switch
    progress and its Cancel, pod log, audit log) reruns only itself, not the sign-in at
    the top of the page, so an expired IAP token or a revoked admin would go unnoticed."""
    try:
        who = identify(settings, access_mode(settings))
    except AuthError as exc:
        problem = str(exc)
    else:
        if who.actor == admin.actor:
            return True
        problem = "This page was opened by someone else."
    if "Reload the page" not in problem:
        problem = problem.rstrip(".") + ". Reload the page to sign in again."
    st.warning(f"Paused: {literal(problem)}", icon=":material/lock_clock:")
    return False


st.title("Admin console")
admin = _identify()
st.caption(signed_in_line(admin))

registry = _registry()
audit = _audit(settings.database_url)

cluster: Cluster | None = None
try:
    cluster = _cluster(settings.kubeconfig)
except ClusterError as exc:
    st.warning(admin_error_message(exc), icon=":material/power_off:")

pools_client: NodePools | None = None
pools_problem = ""
if settings.gke_configured:
    try:
        pools_client = _node_pools(
            settings.gke_project,
            settings.gke_location,
            settings.gke_cluster,
            settings.gke_api_endpoint,
        )
    except NodePoolError as exc:
        pools_problem = admin_error_message(exc)
else:
    pools_problem = (
        "GKE is not configured, so node pools cannot be listed or scaled: set GKE_PROJECT, "
        "GKE_LOCATION and GKE_CLUSTER (and give the console's Google service account the "
        "Kubernetes Engine Developer role)."
    )


def _age(seconds: float) -> str:
    s = int(seconds)
    if s < 120:
        return f"{s}s"
    if s < 7200:
        return f"{s // 60}m"
    return f"{s // 3600}h" if s < 172_800 else f"{s // 86400}d"


# ---------------------------------------------------------------- deploy / switch


def _deploy_section() -> None:
    st.header("Deploy a model")
    try:
        catalog = _catalog()
    except CatalogError as exc:
        st.error(f"The model catalog cannot be loaded: {exc}")
        return
    models = {m.id: m for m in catalog.models}
    mid = st.selectbox(
        "Model",
        list(models),
        key="model",
        format_func=lambda i: (
            f"{i} — {models[i].hf_repo} ({models[i].kind}, {models[i].params_b:g}B)"
        ),
    )
    model = models[mid]
    rec = model.recommended
    c1, c2, c3, c4, c5 = st.columns(5)
    gpus = list(GPUS)
    gpu = c1.selectbox(
        "GPU type", gpus, index=gpus.index(rec.gpu), key=f"gpu_{mid}",
        format_func=lambda g: GPUS[g].display_name,
    )  # fmt: skip
    count = int(c2.number_input("GPUs", 1, 16, rec.count, key=f"count_{mid}"))
    mml = int(
        c3.number_input(
            "Max context (tokens)", 16, model.max_context, rec.max_model_len, step=1024,
            key=f"mml_{mid}",
        )
    )  # fmt: skip
    conc = int(c4.number_input("Concurrent requests", 1, 256, 1, key=f"conc_{mid}"))
    util = float(c5.slider("GPU memory use", 0.5, 0.95, 0.90, 0.05, key=f"util_{mid}"))
    try:
        plan = svc.plan_deploy(
            model, gpu=gpu, gpu_count=count, max_model_len=mml, concurrency=conc,
            gpu_memory_utilization=util,
        )  # fmt: skip
    except SizingError as exc:
        st.error(admin_error_message(exc))
        return
    _render_sizing(plan)
    if plan.blocked:
        st.error(f"Deploy blocked: {plan.blocked}")
    if model.gated:
        st.caption(
            f"{model.hf_repo} is gated: the cluster's `huggingface` Secret must hold a token "
            "of an account that accepted its license."
        )
    if cluster is None:
        st.info("Connect a cluster to deploy (see above).")
        return
    strategy = _choose_strategy(plan)
    if st.button(
        f"Deploy {mid}", key="deploy", type="primary", disabled=bool(plan.blocked) or not strategy
    ):
        _start_switch(plan, strategy)


def _render_sizing(plan: svc.DeployPlan) -> None:
    s = plan.sizing
    st.subheader("GPU sizing")
    cols = st.columns(5)
    cols[0].metric("Weights", f"{s.weights_gb:.1f} GB", help=f"precision {s.precision}")
    cols[1].metric(
        "KV cache", f"{s.kv_cache_gb:.1f} GB", help=f"{s.max_model_len} tokens x {s.concurrency}"
    )
    cols[2].metric("Overhead", f"{s.overhead_gb:.1f} GB")
    cols[3].metric("Needed", f"{s.required_gb:.1f} GB")
    cols[4].metric(
        "Usable", f"{s.capacity_gb:.1f} GB", help=f"{s.tensor_parallel} x {s.gpu.display_name}"
    )
    text = f"**Verdict: {s.label}** — {s.explanation}"
    if s.verdict is Verdict.FITS:
        st.success(text)
    elif s.verdict is Verdict.DOES_NOT_FIT:
        st.error(text)
    else:
        st.warning(text)


def _choose_strategy(plan: svc.DeployPlan) -> str | None:
    assert cluster is not None
    status = _read_status(shared=False)
    if status.inventory is None:
        st.error(admin_error_message(status.cluster_error))
        return None
    in_place, blue_green = svc.strategy_options(
        status.inventory, status.pools, gpus_needed=plan.sizing.tensor_parallel,
        gpu_type=plan.sizing.gpu.accelerator, pool=settings.gke_node_pool, model=plan.model.id,
    )  # fmt: skip
    if not in_place.allowed:  # the pool can never schedule it: neither strategy would work
        st.error(f"Deploy blocked: {in_place.reason}")
        return None
    offered = {"in_place": "In place (Recreate)"}
    if blue_green.allowed:
        offered["blue_green"] = "Blue/green (no downtime)"
    choice = st.radio(
        "Strategy", list(offered), format_func=offered.get, key="strategy", horizontal=True
    )
    st.caption(in_place.reason if choice == "in_place" else blue_green.reason)
    if not blue_green.allowed:
        st.caption(f"Blue/green is not offered: {blue_green.reason}")
    return choice


def _start_switch(plan: svc.DeployPlan, strategy: str) -> None:
    assert cluster is not None and plan.spec is not None
    probe = None
    if strategy == "blue_green":

        def probe(url: str) -> list[str]:
            return [m.id for m in list_models(url, API_KEY)]

    elif health(settings.llm_url, API_KEY).state is BackendState.HEALTHY:
        # in place: the Service then reaches only the new pod; confirm via the chat backend
        def probe(_url: str) -> list[str]:
            return [m.id for m in list_models(settings.llm_url, API_KEY)]

    try:
        registry.start_switch(
            cluster, plan.spec, admin=admin.actor, namespace=settings.k8s_namespace,
            deployment=settings.vllm_deployment, service=settings.vllm_service,
            strategy=strategy, model_probe=probe, audit=audit, pools=pools_client,
        )  # fmt: skip
    except Exception as exc:  # noqa: BLE001 - typed errors become messages
        st.error(f"Switch refused: {admin_error_message(exc)}")


@st.fragment(run_every="1s")
def _switch_progress() -> None:
    job = registry.current("switch")
    if job is None:  # nothing to show or act on: no sign-in check every tick of an idle page
        return
    if not _still_admin():
        return
    view = job.view()
    if view.running:
        st.session_state["switch_watched"] = view.id
    elif st.session_state.pop("switch_watched", None) == view.id:
        # just finished while this page watched it: redraw the whole page once, so the
        # status below shows the new pods at once instead of at its next refresh
        st.rerun(scope="app")
    models = f"{view.model_before} → {view.model_after}" if view.model_before else view.model_after
    st.subheader(literal(f"Switch {models}"))
    st.caption(literal(f"Started by {view.actor} on {view.target}"))
    res = view.result
    if view.running:
        st.info(
            safe_markdown(view.messages[-1] if view.messages else "Starting…"),
            icon=":material/hourglass_top:",
        )
        if st.button("Cancel and roll back", key="cancel_switch", disabled=view.cancel_requested):
            registry.cancel_switch(admin.actor, audit)
    elif isinstance(res, SwitchResult):
        text = safe_markdown(f"**{res.outcome.replace('_', ' ').capitalize()}** — {res.message}")
        if res.outcome in ("switched", "unchanged"):
            st.success(text)
        elif res.outcome == "rolled_back":
            st.warning(text)
        else:
            st.error(text)
    elif view.error is not None:
        st.error(f"The switch stopped: {admin_error_message(view.error)}")
    failed = view.failed_snapshot
    if failed is not None and not view.running:
        st.caption(safe_markdown(f"Why the new model failed: {failed.summary}"))
        if failed.events:
            warn = [e for e in failed.events if e.warning][:5]
            for e in warn:
                st.caption(
                    safe_markdown(
                        f":material/warning: {e.reason}: {e.message} ({e.kind}/{e.name}, x{e.count})"
                    )
                )
        if failed.log_tail:
            st.caption("Last log lines of the failed pod")
            st.code("\n".join(failed.log_tail[-20:]), language=None)
    snap = view.snapshot
    if snap is not None:
        st.caption(
            safe_markdown(
                f"Deployment {snap.deployment}: {snap.state} — {snap.summary} "
                f"({snap.ready_replicas}/{snap.desired_replicas} ready)"
            )
        )
        if snap.pods:
            st.dataframe(
                [
                    {"pod": p.name, "phase": p.phase, "ready": p.ready, "restarts": p.restarts,
                     "node": p.node, "new": p.new, "reason": f"{p.reason} {p.message}".strip()}
                    for p in snap.pods
                ],
                key="switch_pods", hide_index=True,
            )  # fmt: skip
        if snap.conditions:
            st.caption(
                safe_markdown(
                    "Conditions: "
                    + "; ".join(f"{c.type}={c.status} ({c.reason})" for c in snap.conditions)
                )
            )
        if snap.events:
            st.dataframe(
                [
                    {"type": e.type, "reason": e.reason, "object": f"{e.kind}/{e.name}",
                     "message": e.message, "count": e.count}
                    for e in snap.events[:10]
                ],
                key="switch_events", hide_index=True,
            )  # fmt: skip
        if snap.log_tail:
            st.caption("Last log lines of the loading pod")
            st.code("\n".join(snap.log_tail[-20:]), language=None)
    with st.expander("Steps", expanded=False):
        st.text("\n".join(view.messages[-30:]))


# ---------------------------------------------------------------- status

# A full page run reads the cluster once: the status view, first on the page, reads it and
# leaves it here for the deploy form further down the same run (the strategies it offers).
# The status view's own timed reruns read afresh; what they leave here nobody takes (the
# deploy form does not run in them, and the next full run starts with a new dict).
_read_this_run: dict[str, svc.Status] = {}


def _read_status(*, shared: bool) -> svc.Status:
    """``shared``: read and leave the result for the rest of this run (the status view);
    else take what this run has read, or read (the deploy form)."""
    if not shared and "status" in _read_this_run:
        return _read_this_run.pop("status")
    status = svc.read_status(
        cluster, settings.k8s_namespace, pools_client, llm_url=settings.llm_url, api_key=API_KEY
    )
    if shared:
        _read_this_run["status"] = status
    return status


@st.fragment(run_every=settings.admin_status_refresh_s)
def _status() -> None:
    if not _still_admin():
        return
    st.header("Status")
    status = _read_status(shared=True)
    _serving_line(status.serving(settings.k8s_namespace))
    if cluster is None:
        st.caption("No cluster connected: no pods or GPU nodes to show.")
    elif status.inventory is None:
        st.error(admin_error_message(status.cluster_error))
        _pod_log(())
    else:
        _pods_and_nodes(status.inventory)
    _pools_table(status)
    _load()


def _serving_line(line) -> None:
    icon = {"ok": ":material/check_circle:", "warning": ":material/warning:"}
    draw = {"ok": st.success, "warning": st.warning}.get(line.level, st.info)
    draw(literal(line.text), icon=icon.get(line.level, ":material/info:"))


def _pods_and_nodes(inv) -> None:
    st.subheader(f"Pods in {settings.k8s_namespace}")
    if not inv.pods:
        st.caption("No pods.")
    else:
        rows = []
        for p in inv.pods:
            recent = "; ".join(f"{e.reason}: {e.message}" for e in p.events[:2])
            rows.append(
                {"pod": p.name, "phase": p.phase, "ready": p.ready, "restarts": p.restarts,
                 "node": p.node, "age": _age(p.age_s), "model": p.model,
                 "reason": f"{p.reason} {p.message}".strip(), "recent events": recent}
            )  # fmt: skip
        st.dataframe(rows, key="pods", hide_index=True)
    _pod_log(inv.pods)
    st.subheader("GPU nodes")
    if not inv.nodes:
        st.caption("No GPU nodes right now (the pool may be scaled to zero).")
    else:
        st.dataframe(
            [
                {"node": n.name, "pool": n.pool, "accelerator": n.accelerator, "spot": n.spot,
                 "ready": n.ready, "GPUs capacity": n.gpu_capacity,
                 "allocatable": n.gpu_allocatable, "requested": n.gpu_requested}
                for n in inv.nodes
            ],
            key="nodes", hide_index=True,
        )  # fmt: skip
        st.caption(
            f"requested: GPUs asked for by pods of {literal(settings.k8s_namespace)}. The "
            "console may list pods of its own namespace only, so GPUs held by other "
            "namespaces' pods are not counted."
        )


def _pod_log(pods) -> None:
    """A pod's last log lines, read (one Kubernetes call per status refresh) and drawn only
    while the expander is open. The choice starts at, and after a switch follows, the
    newest vLLM pod (``svc.log_pod``): a kept choice whose pod is gone falls back to it.

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
    with box:
        pod = st.selectbox("Log of pod", names, index=names.index(svc.log_pod(pods)), key="log_pod")
        try:
            lines = pod_logs(cluster, settings.k8s_namespace, pod, tail_lines=50)
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


_LOG_STYLE = (
    "margin: 0; padding: 0.75rem 1rem; max-height: 28rem; overflow: auto; white-space: pre; "
    "font-size: 0.8rem; line-height: 1.5; border-radius: 0.5rem; "
    "background: rgba(128, 128, 128, 0.08)"
)


def _pools_table(status: svc.Status) -> None:
    st.subheader("Node pools")
    if pools_client is None:
        st.info(pools_problem)
        return
    if status.pools is None:
        st.error(admin_error_message(status.pools_error))
        return
    st.dataframe(
        [
            {"pool": p.name, "machine type": p.machine_type,
             "accelerator": f"{p.accelerator_count} x {p.accelerator_type}" if p.has_gpus else "",
             "nodes": p.node_count,
             "autoscaling": f"{p.min_nodes}..{p.max_nodes}" if p.autoscaling_enabled else "off",
             "spot": p.spot, "status": p.status}
            for p in status.pools
        ],
        key="pools", hide_index=True,
    )  # fmt: skip


def _load() -> None:
    st.subheader("vLLM load")
    history = _history(settings.llm_url)
    try:
        history.add(fetch_metrics(settings.llm_url, API_KEY))
    except LLMError as exc:
        st.caption(admin_error_message(exc))
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
    if not st.toggle("Show load charts", key="load_charts"):
        return
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


# ---------------------------------------------------------------- node pool actions


def _pool_actions() -> None:
    if pools_client is None:
        return
    st.subheader("Scale the GPU pool")
    with st.form("resize"):
        c1, c2 = st.columns(2)
        pool = c1.text_input("Node pool", settings.gke_node_pool, key="resize_pool")
        size = c2.number_input("Nodes (0 = scale to zero)", 0, 1000, 0, key="resize_size")
        if st.form_submit_button("Resize"):
            _start_pool_change(pool.strip(), size=int(size))
    with st.form("autoscale"):
        c1, c2, c3 = st.columns(3)
        pool = c1.text_input("Node pool", settings.gke_node_pool, key="auto_pool")
        lo = c2.number_input("Min nodes (0 allowed)", 0, 1000, 0, key="auto_min")
        hi = c3.number_input("Max nodes", 1, 1000, 2, key="auto_max")
        if st.form_submit_button("Set autoscaling"):
            _start_pool_change(pool.strip(), autoscaling=(int(lo), int(hi)))
    _pool_progress()


def _start_pool_change(pool: str, **change) -> None:
    assert pools_client is not None
    try:
        registry.start_node_pool_change(
            pools_client, pool, admin=admin.actor, audit=audit, **change
        )
    except Exception as exc:  # noqa: BLE001 - typed errors become messages
        st.error(f"Refused: {admin_error_message(exc)}")


@st.fragment(run_every="2s")
def _pool_progress() -> None:
    job = registry.current("node_pool")
    if job is None:  # nothing to show or act on: no sign-in check every tick of an idle page
        return
    if not _still_admin():
        return
    view = job.view()
    last = view.messages[-1] if view.messages else ""
    what = view.messages[0] if view.messages else ""
    if view.running:
        text = f"{what} — {last}" if last != what else what
        st.info(safe_markdown(text), icon=":material/hourglass_top:")
    elif view.error is not None:
        st.error(f"Node pool change failed: {admin_error_message(view.error)}")
    else:
        st.success(safe_markdown(last), icon=":material/check_circle:")


# ---------------------------------------------------------------- audit log


@st.fragment(run_every="5s")
def _audit_log() -> None:
    if not _still_admin():
        return
    st.header("Audit log")
    try:
        entries = audit.recent(20)
    except AuditError as exc:
        st.error(admin_error_message(exc))
        return
    if not entries:
        st.caption("No admin actions recorded yet.")
        return
    now = datetime.now(UTC)
    st.dataframe(
        [
            {"when": f"{_age((now - e.at).total_seconds())} ago", "who": e.actor,
             "action": e.action, "target": e.target, "result": e.result,
             "details": ", ".join(f"{k}={v}" for k, v in e.details.items())}
            for e in entries
        ],
        key="audit", hide_index=True,
    )  # fmt: skip


# The status first: its data is sent and drawn before the rest of the page.
_status()
_deploy_section()
_switch_progress()
_pool_actions()
_audit_log()
