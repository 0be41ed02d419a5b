"""Plain-language messages for the admin page's typed errors (no streamlit import)."""

from __future__ import annotations

import re

from webapp.access.auth import AdminIdentity
from webapp.access.errors import AuthError
from webapp.admin.audit import AuditError
from webapp.admin.service import JobBusy
from webapp.admin.sizing import SizingError
from webapp.cluster.errors import (
    ApiRejected,
    ClusterError,
    ClusterNotConfigured,
    ClusterUnavailable,
    Conflict,
    Forbidden,
    InvalidModelSpec,
    NotFound,
    PoolCannotSchedule,
    SlotMissing,
    StrategyNotAllowed,
    SwitchInProgress,
)
from webapp.cluster.node_pools import NodePoolError
from webapp.llm.errors import LLMError
from webapp.ui.safe_markdown import safe_markdown
from webapp.ui.text import literal

# action phrase (as written by webapp.cluster) -> the RBAC rule it needs
_RBAC = (
    (r"model-switch lock", "get/create/update on leases (coordination.k8s.io)"),
    (r"switch Service", "patch on services"),
    (r"Service", "get on services"),
    (r"patch Deployment", "patch on deployments (apps)"),
    (r"Deployment", "get on deployments (apps)"),
    (r"ReplicaSets", "list on replicasets (apps)"),
    (r"log of pod", "get on pods/log"),
    (r"pods", "list on pods"),
    (r"events", "list on events"),
    (r"nodes", "list on nodes (cluster-wide, a ClusterRole)"),
)


def rbac_rule(action: str) -> str | None:
    """The Kubernetes RBAC permission an action needs, e.g. ``patch on deployments (apps)``."""
    for pattern, rule in _RBAC:
        if re.search(pattern, action):
            return rule
    return None


def admin_error_message(err: Exception) -> str:
    """One or two sentences: what went wrong and what to do. Never a traceback.

    Markdown-safe: what it quotes from the cluster, GKE or vLLM draws no image."""
    return safe_markdown(_message(err))


def _message(err: Exception) -> str:
    if isinstance(err, SwitchInProgress):
        since = f" (since {err.since})" if err.since else ""
        return (
            f"A model switch by {err.holder} is already running{since}. Only one switch runs "
            "at a time: wait for it to finish, or ask them to cancel it."
        )
    if isinstance(err, Forbidden):
        rule = rbac_rule(err.action)
        need = f" It needs the RBAC permission: {rule}." if rule else ""
        return (
            f"The console's service account is not allowed to {err.action}.{need} "
            "Grant it in the console's Role/ClusterRole (k8s/base) and try again."
        )
    if isinstance(err, ClusterNotConfigured):
        return f"No Kubernetes cluster is connected. {err} The chat keeps working meanwhile."
    if isinstance(err, ClusterUnavailable):
        return (
            f"The Kubernetes API cannot be reached right now ({err}). "
            "Check the cluster and the network, then reload."
        )
    if isinstance(err, SlotMissing):
        return (
            f"Blue/green needs the Deployment {err.deployment} in namespace {err.namespace}, "
            "which is missing. The console never creates Deployments (it may only change the "
            "two blue/green slots): apply the manifests, which ship it stopped "
            "(`kubectl apply -k k8s/overlays/<gpu>` or scripts/deploy.sh), then retry. "
            "In place works without it."
        )
    if isinstance(err, NotFound):
        return (
            f"Not found while trying to {err.action}"
            + (f" ({err.detail})" if err.detail else "")
            + ". Is vLLM deployed in this namespace (K8S_NAMESPACE, VLLM_DEPLOYMENT)?"
        )
    if isinstance(err, Conflict):
        return f"Someone changed the Deployment at the same time ({err.action}). Reload and retry."
    if isinstance(err, ApiRejected):
        return f"The cluster rejected the change: {err.action}. {err.detail}".strip()
    if isinstance(err, InvalidModelSpec):
        return f"The model settings are not valid: {err.field} {err.reason}."
    if isinstance(err, PoolCannotSchedule):
        return err.reason  # says why and what to change already
    if isinstance(err, StrategyNotAllowed):
        return f"This switch strategy cannot be used here: {err}"
    if isinstance(err, ClusterError):
        return f"Cluster error: {err}"
    if isinstance(err, NodePoolError | AuthError | JobBusy):
        return str(err)  # these messages are written for the page already
    if isinstance(err, AuditError):
        return f"{err} Admin actions still work; they are not being recorded."
    if isinstance(err, SizingError):
        return f"Cannot size this choice: {err}"
    if isinstance(err, LLMError):
        return f"The model server's metrics are unavailable: {err}"
    return f"Unexpected error ({type(err).__name__}). Check the console's log."


def signed_in_line(who: AdminIdentity) -> str:
    """The line under the admin page's title: who is signed in, and how."""
    name = literal(who.name)  # an e-mail or a kubeconfig user name, shown as typed
    if who.via == "local":
        return (
            f"Signed in as **{name}**, a local admin (LOCAL_ADMIN): your kubeconfig's current "
            "user, with its permissions in the cluster. This app listens on this machine only; "
            f"the audit log names you {literal(who.actor)}."
        )
    return f"Signed in as **{name}** (via {who.via.upper()})."
