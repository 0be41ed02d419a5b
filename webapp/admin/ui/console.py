"""What every section of the admin page shares: the signed-in admin, the clients, the job
registry and the audit log (``Console``), built once per page run by ``open_console``.

Process-wide resources (clients, registry, audit log, metrics history) are cached with
``st.cache_resource`` keyed by what they depend on; nothing is read at import time, so
the sections get the settings of this run through the ``Console``.
"""

from __future__ import annotations

from dataclasses import dataclass

import streamlit as st

from webapp.access.auth import AdminIdentity
from webapp.access.errors import AdminAccessOff, AuthError, NotAdmin, NotLoggedIn
from webapp.access.ui.identify import access_mode, identify
from webapp.admin.audit import AuditLog
from webapp.admin.catalog import Catalog, load_catalog
from webapp.admin.jobs import JobRegistry, JobView
from webapp.admin.messages import admin_error_message
from webapp.admin.status import connect_cluster, connect_node_pools
from webapp.cluster.errors import ClusterError, NodePoolError
from webapp.cluster.k8s import Cluster
from webapp.cluster.node_pools import NodePools
from webapp.llm.metrics import MetricsHistory
from webapp.settings import Settings
from webapp.store import ConversationStore
from webapp.ui.text import literal

GKE_NOT_CONFIGURED = (
    "GKE is not configured, so node pools cannot be listed or scaled: set GKE_PROJECT, "
    "GKE_LOCATION and GKE_CLUSTER (and give the console's Google service account the "
    "Kubernetes Engine Developer role)."
)


@dataclass
class Console:
    """One page run's view of the console."""

    settings: Settings
    admin: AdminIdentity
    registry: JobRegistry
    audit: AuditLog
    cluster: Cluster | None
    pools: NodePools | None
    pools_problem: str

    @property
    def api_key(self) -> str:
        return self.settings.llm_api_key.get_secret_value()


@st.cache_resource(show_spinner=False)
def _registry() -> JobRegistry:
    return JobRegistry()


@st.cache_resource(show_spinner=False)
def _audit(database_url: str) -> AuditLog:
    return AuditLog.from_url(database_url)


@st.cache_resource(show_spinner=False)
def _store(database_url: str) -> ConversationStore:
    return ConversationStore(database_url)  # no I/O until first use


def conversation_store(settings: Settings) -> ConversationStore:
    """The conversations the usage section reads (the chat's database)."""
    return _store(settings.database_url)


@st.cache_resource(show_spinner=False)
def _cluster(kubeconfig: str) -> Cluster:
    # empty: in-cluster service account, else ~/.kube/config
    return connect_cluster(kubeconfig)


@st.cache_resource(show_spinner=False)
def _node_pools(_settings: Settings, project: str, location: str, cluster: str, endpoint: str):
    return connect_node_pools(_settings)


@st.cache_resource(show_spinner=False)
def metrics_history(url: str) -> MetricsHistory:
    """The vLLM load samples of ``url``, shared by every session of this process."""
    return MetricsHistory(max_samples=120, window_s=600)


@st.cache_resource(show_spinner=False)
def catalog() -> Catalog:
    """The model catalog, read once per process (``CatalogError`` if it cannot be)."""
    return load_catalog()


def sign_in(settings: Settings) -> AdminIdentity:
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


def open_console(settings: Settings, admin: AdminIdentity) -> Console:
    """The clients of this run; a cluster or GKE that cannot be used is said, not fatal."""
    cluster: Cluster | None = None
    try:
        cluster = _cluster(settings.kubeconfig)
    except ClusterError as exc:
        st.warning(admin_error_message(exc), icon=":material/power_off:")
    pools: NodePools | None = None
    problem = GKE_NOT_CONFIGURED
    if settings.gke_configured:
        try:
            pools = _node_pools(
                settings, settings.gke_project, settings.gke_location, settings.gke_cluster,
                settings.gke_api_endpoint,
            )  # fmt: skip
        except NodePoolError as exc:
            problem = admin_error_message(exc)
    return Console(
        settings, admin, _registry(), _audit(settings.database_url), cluster, pools, problem
    )


def still_admin(console: Console) -> bool:
    """Identity checked again in every fragment run: a fragment (status refresh, switch
    progress and its Cancel, pod log, audit log) reruns only itself, not the sign-in at
    the top of the page, so an expired IAP token or a revoked admin would go unnoticed."""
    settings = console.settings
    try:
        who = identify(settings, access_mode(settings))
    except AuthError as exc:
        problem = str(exc)
    else:
        if who.actor == console.admin.actor:
            return True
        problem = "This page was opened by someone else."
    if "Reload the page" not in problem:
        problem = problem.rstrip(".") + ". Reload the page to sign in again."
    st.warning(f"Paused: {literal(problem)}", icon=":material/lock_clock:")
    return False


def job_to_show(console: Console, kind: str) -> JobView | None:
    """The view of this process's latest job of ``kind``, for a progress fragment; None when
    there is none (then no sign-in check on every tick of an idle page) or when the viewer
    is no longer this admin (``still_admin`` has said so)."""
    job = console.registry.current(kind)
    if job is None or not still_admin(console):
        return None
    return job.view()


def age(seconds: float) -> str:
    """``seconds`` as the tables show an age: 45s, 12m, 3h, 2d."""
    s = int(seconds)
    if s < 120:
        return f"{s}s"
    if s < 7200:
        return f"{s // 60}m"
    return f"{s // 3600}h" if s < 172_800 else f"{s // 86400}d"
