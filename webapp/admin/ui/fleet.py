"""The "Model pools" section (issue 14): the fleet table, per pool scale / autoscaling /
remove, a form that deploys a catalog model as a new pool, and the pools' running jobs.

Shown only with the gateway layout (``FLEET=true``, set by k8s/components/inference-gateway);
the single-Service install keeps the page as it was. Reads go through ``webapp.admin.fleet``,
actions through ``webapp.admin.fleet_actions`` (one job per pool, polled every second).
"""

from __future__ import annotations

import streamlit as st

from webapp.admin import fleet_actions as fa
from webapp.admin.actions import SwitchRequest, switch_options
from webapp.admin.capacity import quota_reader
from webapp.admin.catalog import CatalogError
from webapp.admin.fleet import Fleet, FleetRow, cell, read_fleet
from webapp.admin.jobs import JobDefinition
from webapp.admin.messages import admin_error_message
from webapp.admin.plan import plan_deploy
from webapp.admin.pool_switch import POOL_SWITCH, PoolSwitch
from webapp.admin.sizing import SizingError
from webapp.admin.ui import canary
from webapp.admin.ui.console import Console, catalog, conversation_store, job_to_show
from webapp.ui.safe_markdown import safe_markdown
from webapp.ui.text import literal

#: the pool forms' entries (per pool: Kubernetes names have no "_"), kept while another tab
#: is open (``webapp.ui.entries``)
ENTRIES = ("pool_rep_", "pool_min_", "pool_max_", "pool_target_", "switch_model_", "pool_model",
           "pool_name_", "pool_replicas")  # fmt: skip
STARTED = "fleet_started"  # session: pools this page started a job on (for the progress list)
WATCHED = "fleet_watched"  # session: ids of running pool jobs this page has shown


def show(console: Console) -> None:
    if not console.settings.fleet:
        return
    st.header("Model pools")
    if console.cluster is None:
        st.info("Connect a cluster to see and change the model pools (see above).")
        return
    fleet = read_fleet(console.cluster, console.settings.k8s_namespace)
    if fleet.error is not None:
        st.error(admin_error_message(fleet.error))
        return
    _table(fleet)
    served = frozenset(r.model for r in fleet.rows if r.model)
    for row in fleet.rows:
        _controls(console, row, served)
    _progress(console, tuple(r.pool for r in fleet.rows))
    _deploy_form(console, fleet)
    canary.show(console)  # switch a pool's model by traffic share (webapp/admin/ui/canary.py)


def _table(fleet: Fleet) -> None:
    st.table(
        [
            {"Pool": r.pool, "Model": r.model or "—", "vLLM": r.vllm, "GPU": r.gpus,
             "Replicas ready": f"{r.ready}/{r.replicas}" + (" (asleep)" if r.asleep else ""),
             "Autoscaling": r.autoscaling, "Traffic": r.share,
             "Waiting": cell(r.live.waiting, ".0f"), "KV cache": cell(r.live.kv_cache, ".0%"),
             "TTFT p95": cell(r.live.ttft_p95_s, ".2f") + ("" if r.live.ttft_p95_s is None
                                                            else " s")}
            for r in fleet.rows
        ]
    )  # fmt: skip
    unread = [u for r in fleet.rows for u in r.live.unread]
    if unread:
        st.caption(literal("Not answering (their numbers are left out): " + "; ".join(unread)))


def _controls(console: Console, row: FleetRow, served: frozenset[str]) -> None:
    pool, ns = row.pool, console.settings.k8s_namespace
    with st.expander(f"Change pool {pool}", expanded=False):
        if row.autoscaling != "off":
            st.caption("Autoscaling is on: its HPA sets the replicas between its minimum and "
                       "maximum, so a count set by hand lasts until its next decision.")  # fmt: skip
        c1, c2 = st.columns(2)
        replicas = int(c1.number_input("Replicas", 0, 64, row.replicas, key=f"pool_rep_{pool}"))
        if c1.button(f"Scale {pool}", key=f"scale_{pool}"):
            request = fa.ScalePool(console.cluster, ns, pool, replicas, node_pools=console.pools,
                                   read_quota=quota_reader(console.settings))  # fmt: skip
            _start(console, fa.POOL_SCALE, request)
        low = int(c2.number_input("Min replicas (0: scale to zero)", 0, 64, 1,
                                  key=f"pool_min_{pool}", help=fa.SCALE_TO_ZERO_HELP))  # fmt: skip
        high = int(
            c2.number_input("Max replicas", 1, 64, max(1, row.replicas), key=f"pool_max_{pool}")
        )
        target = float(c2.number_input("Target requests waiting per replica", 0.5, 1000.0, 4.0,
                                       key=f"pool_target_{pool}"))  # fmt: skip
        if c2.button(f"Set autoscaling of {pool}", key=f"autoscale_{pool}"):
            request = fa.AutoscalePool(console.cluster, ns, pool, low, high, target,
                                       project=console.settings.gke_project)  # fmt: skip
            _start(console, fa.POOL_AUTOSCALE, request)
        _switch_control(console, row, served)
        if st.button(f"Remove {pool}", key=f"remove_{pool}"):
            _start(console, fa.POOL_REMOVE, fa.RemovePool(console.cluster, ns, pool))


def _switch_control(console: Console, row: FleetRow, served: frozenset[str]) -> None:
    """Switch the pool's model in place (``pool_switch.POOL_SWITCH``) to a catalog model no
    pool serves (one rule per model name), sized on the pool's GPUs."""
    try:
        models = {m.id: m for m in catalog().models if m.id not in served}
    except CatalogError:
        return  # the deploy form below says why
    if not models or not row.model or not row.gpu_type:
        return
    pool = row.pool
    mid = st.selectbox(f"Switch {pool} to", list(models), key=f"switch_model_{pool}")
    model = models[mid]
    try:
        plan = plan_deploy(model, gpu=row.gpu_type, gpu_count=max(1, row.gpus_per_replica),
                           max_model_len=min(model.recommended.max_model_len,
                                             model.max_context))  # fmt: skip
    except SizingError as exc:
        st.error(admin_error_message(exc))
        return
    if plan.blocked:
        st.caption(literal(f"Switch blocked: {plan.blocked}"))
    if st.button(f"Switch {pool} to {mid}", key=f"switch_{pool}", disabled=bool(plan.blocked)):
        assert plan.spec is not None
        s = console.settings
        request = SwitchRequest(console.cluster, plan.spec, namespace=s.k8s_namespace,
                                deployment=pool, service=pool, pools=console.pools,
                                store=conversation_store(s), read_quota=quota_reader(s),
                                options=switch_options(s.switch_unschedulable_grace_s))  # fmt: skip
        _start(console, POOL_SWITCH, PoolSwitch(request, row.model))


def _start(
    console: Console, definition: JobDefinition, request: fa.PoolAction | PoolSwitch
) -> None:
    try:
        fa.start_pool_job(console.registry, definition, request, actor=console.admin.actor,
                          audit=console.audit)  # fmt: skip
    except Exception as exc:  # noqa: BLE001 - typed errors become messages
        st.error(admin_error_message(exc))
        return
    started = st.session_state.setdefault(STARTED, [])
    if request.pool not in started:
        started.append(request.pool)


@st.fragment(run_every="1s")
def _progress(console: Console, pools: tuple[str, ...]) -> None:
    """The latest job of each pool (listed, or started from this page), as it goes."""
    names = dict.fromkeys([*pools, *st.session_state.get(STARTED, [])])
    watched: set[int] = st.session_state.setdefault(WATCHED, set())
    finished = False
    for pool in names:
        view = job_to_show(console, fa.pool_kind(pool))
        if view is None:
            continue
        if view.running:
            watched.add(view.id)
        elif view.id in watched:
            watched.discard(view.id)
            finished = True
        last = view.messages[-1] if view.messages else "Starting…"
        text = safe_markdown(f"**{pool}** ({view.actor}): {last}")
        if view.running:
            st.info(text, icon=":material/hourglass_top:")
        elif view.error is not None:
            st.error(f"{literal(pool)}: {admin_error_message(view.error)}")
        else:
            st.success(text)
    if finished:  # a job this page watched just ended: redraw the table with what it changed
        st.rerun(scope="app")


def _deploy_form(console: Console, fleet: Fleet) -> None:
    st.subheader("Deploy a model as a new pool")
    try:
        models = {m.id: m for m in catalog().models}
    except CatalogError as exc:
        st.error(f"The model catalog cannot be loaded: {exc}")
        return
    base = fleet.row(console.settings.vllm_deployment) or (fleet.rows[0] if fleet.rows else None)
    if base is None or not base.gpu_type:
        st.info("A new pool copies the default pool's vLLM Deployment, and there is none.")
        return
    mid = st.selectbox("Model", list(models), key="pool_model",
                       format_func=lambda i: f"{i} — {models[i].hf_repo}")  # fmt: skip
    model = models[mid]
    c1, c2 = st.columns(2)
    name = c1.text_input("Pool name", value=f"vllm-{mid}"[:59], key=f"pool_name_{mid}")
    replicas = int(c2.number_input("Replicas", 1, 64, 1, key="pool_replicas"))
    mml = min(model.recommended.max_model_len, model.max_context)
    st.caption(literal(f"Each replica: {base.gpus} (the default pool's GPUs), {mml} tokens "
                       "of context."))  # fmt: skip
    try:
        plan = plan_deploy(model, gpu=base.gpu_type, gpu_count=base.gpus_per_replica,
                           max_model_len=mml)  # fmt: skip
    except SizingError as exc:
        st.error(admin_error_message(exc))
        return
    verdict = f"**Verdict: {plan.sizing.label}** — {plan.sizing.explanation}"
    (st.error if plan.blocked else st.success)(safe_markdown(verdict))
    if st.button(f"Deploy {mid} as pool", key="pool_deploy", disabled=bool(plan.blocked)):
        request = fa.DeployPool(
            console.cluster, console.settings.k8s_namespace, name.strip(), model=mid,
            hf_repo=model.hf_repo, max_model_len=mml, replicas=replicas,
            catalog_ids=tuple(models), gpu_type=base.gpu_type,
            gpus_per_replica=base.gpus_per_replica, node_pools=console.pools,
            read_quota=quota_reader(console.settings),
        )  # fmt: skip
        _start(console, fa.POOL_DEPLOY, request)
