"""A what-if page for part 3 (not the product): only the admin page's three status tables.

``streamlit run bench/status_only_app.py`` with the admin console's environment draws the
pods, GPU nodes and node pools tables from one ``webapp.admin.status.read_status`` — the same
data and columns as ``webapp/admin/ui/page.py``, drawn as it draws them (static tables of
the first rows, ``webapp.ui.html_table``, since issue 12.4) — and nothing else: no identity check, no
deploy form, no pod log, no charts. Timing it like the real page shows how much of the
page-open time is the status view itself and how much the rest of the page.
"""

import sys
from pathlib import Path

import streamlit as st

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from webapp.admin import status as admin_status  # noqa: E402
from webapp.admin.ui.status import FIRST_ROWS  # noqa: E402
from webapp.cluster.k8s import connect  # noqa: E402
from webapp.cluster.node_pools import NodePools  # noqa: E402
from webapp.settings import get_settings  # noqa: E402
from webapp.ui.html_table import html_table, needs_first  # noqa: E402


def table(rows: list[dict], name: str) -> None:
    first = needs_first(rows)[:FIRST_ROWS]  # rows without "ready" keep their order
    st.html(html_table(first, name=name, total=len(rows), attention="ready"))


settings = get_settings()
st.set_page_config(page_title="status only", layout="wide")


@st.cache_resource(show_spinner=False)
def _clients():
    return connect(settings.kubeconfig or None), NodePools.from_settings(settings)


cluster, pools = _clients()
st.title("Admin console")
status = admin_status.read_status(cluster, settings.k8s_namespace, pools)
inv = status.inventory
st.subheader(f"Pods in {settings.k8s_namespace}")
table(
    [
        {"pod": p.name, "phase": p.phase, "ready": p.ready, "restarts": p.restarts,
         "node": p.node, "age": f"{int(p.age_s)}s", "model": p.model, "reason": f"{p.reason} {p.message}".strip(),
         "recent events": "; ".join(f"{e.reason}: {e.message}" for e in p.events[:2])}
        for p in inv.pods
    ],
    "pods",
)  # fmt: skip
st.subheader("GPU nodes")
table(
    [
        {"node": n.name, "pool": n.pool, "accelerator": n.accelerator, "spot": n.spot,
         "ready": n.ready, "GPUs capacity": n.gpu_capacity, "allocatable": n.gpu_allocatable,
         "requested": n.gpu_requested}
        for n in inv.nodes
    ],
    "nodes",
)  # fmt: skip
st.subheader("Node pools")
table(
    [
        {"pool": p.name, "machine type": p.machine_type, "nodes": p.node_count,
         "spot": p.spot, "status": p.status}
        for p in status.pools or ()
    ],
    "pools",
)  # fmt: skip
