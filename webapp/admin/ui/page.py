"""Admin page: watch pods, GPUs, node pools and vLLM load; deploy/switch the served model.

A router of sections, one module each under ``webapp/admin/ui/``: the status view first,
right under the sign-in line, so its tables are the first data sent and drawn when the
page opens (bench/RESULTS.md 3b); then the model pools (with the gateway layout), deploy, the switch's progress, node pools, usage and the
audit log. The sections only lay out widgets: reads go through ``webapp.admin.status``,
long actions through the process-wide ``JobRegistry`` (``webapp.admin.jobs``), whose
threads outlive reruns (fragments poll their progress), and typed errors become
messages in ``webapp.admin.messages``.
"""

from __future__ import annotations

import streamlit as st

from webapp.admin.messages import signed_in_line
from webapp.admin.ui import audit, deploy, fleet, pools, status, switch, usage
from webapp.admin.ui.console import open_console, sign_in
from webapp.settings import get_settings

settings = get_settings()
st.title("Admin console")
admin = sign_in(settings)
st.caption(signed_in_line(admin))
console = open_console(settings, admin)

status.show(console)  # first: its data is sent and drawn before the rest of the page
fleet.show(console)  # the model pools (FLEET=true, the inference-gateway layout)
deploy.show(console)
switch.show(console)
pools.show(console)
usage.show(console)
audit.show(console)
