"""The node-pool section: resize the GPU pool or change its autoscaling
(``actions.NODE_POOL_RESIZE`` / ``NODE_POOL_AUTOSCALING``) and follow the GKE operation."""

from __future__ import annotations

import streamlit as st

from webapp.admin import actions
from webapp.admin.jobs import JobDefinition
from webapp.admin.messages import admin_error_message
from webapp.admin.status import read_pools
from webapp.admin.ui.console import Console, job_to_show
from webapp.admin.ui.status import pools_table
from webapp.ui.safe_markdown import safe_markdown

#: the scaling forms' entries, kept while another tab is open (``webapp.ui.entries``)
ENTRIES = ("resize_pool", "resize_size", "auto_pool", "auto_min", "auto_max")


def show(console: Console) -> None:
    """The node pools tab: the pools as the status shows them, then the scaling forms."""
    pools_table(console, read_pools(console.cluster, console.pools))
    pools = console.pools
    if pools is None:
        return
    st.subheader("Scale the GPU pool")
    default = console.settings.gke_node_pool
    # plain widgets, not st.form: a form's entries stay in the browser until sent, and
    # would be lost on a change of tab (``ENTRIES``)
    with st.container(border=True):
        c1, c2 = st.columns(2)
        pool = c1.text_input("Node pool", default, key="resize_pool")
        size = c2.number_input("Nodes (0 = scale to zero)", 0, 1000, 0, key="resize_size")
        if st.button("Resize", key="resize_go"):
            request = actions.ResizeRequest(pools, pool.strip(), int(size))
            _start(console, actions.NODE_POOL_RESIZE, request)
    with st.container(border=True):
        c1, c2, c3 = st.columns(3)
        pool = c1.text_input("Node pool", default, key="auto_pool")
        lo = c2.number_input("Min nodes (0 allowed)", 0, 1000, 0, key="auto_min")
        hi = c3.number_input("Max nodes", 1, 1000, 2, key="auto_max")
        if st.button("Set autoscaling", key="auto_go"):
            request = actions.AutoscalingRequest(pools, pool.strip(), int(lo), int(hi))
            _start(console, actions.NODE_POOL_AUTOSCALING, request)
    _progress(console)


def _start(console: Console, definition: JobDefinition, request) -> None:
    try:
        console.registry.start(definition, request, actor=console.admin.actor, audit=console.audit)
    except Exception as exc:  # noqa: BLE001 - typed errors become messages
        st.error(f"Refused: {admin_error_message(exc)}")


@st.fragment(run_every="2s")
def _progress(console: Console) -> None:
    view = job_to_show(console, actions.NODE_POOL_RESIZE.kind)
    if view is None:
        return
    last = view.messages[-1] if view.messages else ""
    what = view.messages[0] if view.messages else ""
    if view.running:
        text = f"{what} — {last}" if last != what else what
        st.info(safe_markdown(text), icon=":material/hourglass_top:")
    elif view.error is not None:
        st.error(f"Node pool change failed: {admin_error_message(view.error)}")
    else:
        st.success(safe_markdown(last), icon=":material/check_circle:")
