"""Admin page: watch pods, GPUs, node pools and vLLM load; deploy/switch the served model.

A router of tabs, one module per section under ``webapp/admin/ui/``. Only the open tab
runs (``st.tabs(on_change="rerun")``), so a page open reads and draws the status alone
(bench/RESULTS.md 3b): **Status** (pods, GPU nodes, node pools, GPUs, vLLM load, pod log),
**Models** (the model pools with the gateway layout, deploy, the switch's progress),
**Node pools** (scale, autoscaling), **Usage** and **Audit log**. The open tab is in the
URL (``?tab=Models``), so a reload or a shared link opens the same tab. The sections only
lay out widgets: reads go through ``webapp.admin.status``, long actions through the
process-wide ``JobRegistry`` (``webapp.admin.jobs``), whose threads outlive reruns
(fragments poll their progress), and typed errors become messages in
``webapp.admin.messages``.
"""

from __future__ import annotations

import streamlit as st

from webapp.admin.messages import signed_in_line
from webapp.admin.ui import audit, canary, deploy, fleet, pools, status, switch, usage
from webapp.admin.ui.console import open_console, sign_in
from webapp.settings import get_settings
from webapp.ui.entries import keep_entries

#: The tabs, in order; the first opens by default. Their labels are the URL's ``tab`` values.
TABS = ("Status", "Models", "Node pools", "Usage", "Audit log")

settings = get_settings()
st.title("Admin console")
admin = sign_in(settings)
st.caption(signed_in_line(admin))
console = open_console(settings, admin)

# the forms' entries of the tabs not open now are kept for when they are opened again
keep_entries(deploy.ENTRIES + fleet.ENTRIES + canary.ENTRIES + pools.ENTRIES + usage.ENTRIES)
tabs = dict(
    zip(TABS, st.tabs(TABS, key="tab", on_change="rerun", bind="query-params"), strict=True)
)
if tabs["Status"].open:
    with tabs["Status"]:
        status.show(console)
if tabs["Models"].open:
    with tabs["Models"]:
        fleet.show(console)  # the model pools (FLEET=true, the inference-gateway layout)
        deploy.show(console)
        switch.show(console)
if tabs["Node pools"].open:
    with tabs["Node pools"]:
        pools.show(console)
if tabs["Usage"].open:
    with tabs["Usage"]:
        usage.show(console)
if tabs["Audit log"].open:
    with tabs["Audit log"]:
        audit.show(console)
