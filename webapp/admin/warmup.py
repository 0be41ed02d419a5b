"""Import the admin console's heavy libraries once per process, before its first page.

The admin page's first script run in a process used to import ~2-3 s of libraries before
its tables could be drawn (bench/RESULTS.md 3b, cause 4): SQLAlchemy for the audit log,
the Kubernetes client, the GKE client, pandas and pyarrow for ``st.dataframe``. The router
calls ``preload`` in ``APP_MODE=admin``; the chat needs none of it.

Streamlit runs the router only when a session (or its script health check) runs the script,
so the admin Deployment's startup probe is that health check (k8s/base/webapp-admin.yaml):
the pod imports all this while it starts, before the Service sends it an admin.

Not in a background thread, although that would not hold up the run that starts it: a
thread importing a package while a script run imports the same one can leave it half
initialised (SQLAlchemy: "cannot import name ... from partially initialized module",
seen in the bench). So the first caller imports and any concurrent caller waits for it.
"""

from __future__ import annotations

import importlib
import logging
import threading
from collections.abc import Sequence

from webapp.settings import Settings

log = logging.getLogger(__name__)

#: ``(module, function to call or "")`` in the order the admin page needs them.
ADMIN_IMPORTS: tuple[tuple[str, str], ...] = (
    ("webapp.store.engine", ""),  # the audit log's engine: SQLAlchemy, Alembic (~0.5 s)
    ("webapp.cluster.k8s", "preload"),  # the kubernetes client and its models (~0.8 s)
    ("webapp.cluster.node_pools", "preload"),  # the GKE client (~0.3 s)
    ("pandas", ""),  # st.dataframe: pandas + numpy (~1 s)
    ("pyarrow", ""),  # and Arrow (~0.2 s)
)

_lock = threading.Lock()
_done = False


def admin_imports(settings: Settings) -> tuple[tuple[str, str], ...]:
    """What the admin page will import under ``settings`` (the GKE client only if configured)."""
    return tuple(
        (module, fn)
        for module, fn in ADMIN_IMPORTS
        if module != "webapp.cluster.node_pools" or settings.gke_configured
    )


def preload(imports: Sequence[tuple[str, str]]) -> None:
    """Import ``imports`` unless this process already did; a concurrent caller waits."""
    global _done
    if _done:
        return
    with _lock:
        if _done:
            return
        for module, function in imports:
            try:
                loaded = importlib.import_module(module)
                if function:
                    getattr(loaded, function)()
            except Exception:  # noqa: BLE001 - best effort: the page imports it again and reports
                log.warning("preload: importing %s failed", module, exc_info=True)
        _done = True
