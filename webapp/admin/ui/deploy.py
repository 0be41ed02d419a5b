"""The deploy section: choose a catalog model and its GPUs, see the sizing, pick how to
switch, and start the switch (``actions.SWITCH``); its progress is ``ui/switch.py``."""

from __future__ import annotations

import streamlit as st

from webapp.admin import actions
from webapp.admin.capacity import quota_reader
from webapp.admin.catalog import CatalogError
from webapp.admin.messages import admin_error_message
from webapp.admin.plan import (
    DEFAULT_STREAM_INTERVAL,
    STREAM_INTERVALS,
    DeployPlan,
    plan_deploy,
    strategy_options,
)
from webapp.admin.sizing import GPUS, SizingError, Verdict
from webapp.admin.ui.console import Console, catalog, conversation_store
from webapp.admin.ui.status import read_status

#: the deploy form's entries, kept while another tab is open (``webapp.ui.entries``)
ENTRIES = ("deploy_model", "gpu_type_", "count_", "mml_", "conc_", "util_", "chunk_", "strategy")
STREAM_INTERVAL_HELP = (
    "vLLM's --stream-interval: how many tokens the server sends per streamed chunk (the "
    "first token always alone). Fewer, larger chunks cost the chat app less CPU per token, "
    "so one replica carries more people at once; above the page's redraw rate (~10 a "
    "second) answers appear in visibly larger steps. 4 suits most models; raise it for "
    "very fast models."
)


def show(console: Console) -> None:
    st.header("Deploy a model")
    try:
        models = {m.id: m for m in catalog().models}
    except CatalogError as exc:
        st.error(f"The model catalog cannot be loaded: {exc}")
        return
    mid = st.selectbox(
        "Model",
        list(models),
        key="deploy_model",
        format_func=lambda i: (
            f"{i} — {models[i].hf_repo} ({models[i].kind}, {models[i].params_b:g}B)"
        ),
    )
    plan = _plan(models[mid])
    if plan is None:
        return
    _render_sizing(plan)
    if plan.blocked:
        st.error(f"Deploy blocked: {plan.blocked}")
    if plan.model.gated:
        st.caption(
            f"{plan.model.hf_repo} is gated: the cluster's `huggingface` Secret must hold a "
            "token of an account that accepted its license."
        )
    if console.cluster is None:
        st.info("Connect a cluster to deploy (see above).")
        return
    strategy = _choose_strategy(console, plan)
    if st.button(
        f"Deploy {mid}", key="deploy", type="primary", disabled=bool(plan.blocked) or not strategy
    ):
        _start_switch(console, plan, strategy)  # type: ignore[arg-type]


def _plan(model) -> DeployPlan | None:
    """The admin's GPU choices for ``model`` (defaults: its recommendation), sized."""
    rec, mid = model.recommended, model.id
    c1, c2, c3, c4, c5, c6 = st.columns(6)
    gpus = list(GPUS)
    gpu = c1.selectbox(
        "GPU type", gpus, index=gpus.index(rec.gpu), key=f"gpu_type_{mid}",
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
    chunk = int(
        c6.number_input(
            "Tokens per streamed chunk", STREAM_INTERVALS[0], STREAM_INTERVALS[-1],
            DEFAULT_STREAM_INTERVAL, key=f"chunk_{mid}", help=STREAM_INTERVAL_HELP,
        )
    )  # fmt: skip
    try:
        return plan_deploy(
            model, gpu=gpu, gpu_count=count, max_model_len=mml, concurrency=conc,
            gpu_memory_utilization=util, stream_interval=chunk,
        )  # fmt: skip
    except SizingError as exc:
        st.error(admin_error_message(exc))
        return None


def _render_sizing(plan: DeployPlan) -> None:
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


def _choose_strategy(console: Console, plan: DeployPlan) -> str | None:
    status = read_status(console)
    if status.inventory is None:
        st.error(admin_error_message(status.cluster_error))
        return None
    in_place, blue_green = strategy_options(
        status.inventory, status.pools, gpus_needed=plan.sizing.tensor_parallel,
        gpu_type=plan.sizing.gpu.accelerator, pool=console.settings.gke_node_pool,
        model=plan.model.id,
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


def _start_switch(console: Console, plan: DeployPlan, strategy: str) -> None:
    assert console.cluster is not None and plan.spec is not None
    s = console.settings
    request = actions.SwitchRequest(
        console.cluster, plan.spec, namespace=s.k8s_namespace, deployment=s.vllm_deployment,
        service=s.vllm_service, strategy=strategy,
        model_probe=actions.switch_probe(strategy, s.llm_url, console.api_key),
        options=actions.switch_options(s.switch_unschedulable_grace_s), pools=console.pools,
        store=conversation_store(s), read_quota=quota_reader(s),
    )  # fmt: skip
    try:
        console.registry.start(
            actions.SWITCH, request, actor=console.admin.actor, audit=console.audit
        )
    except Exception as exc:  # noqa: BLE001 - typed errors become messages
        st.error(f"Switch refused: {admin_error_message(exc)}")
