"""What the admin page says for each typed error: one or two plain sentences, what went
wrong and what to do (no streamlit import; the UI only draws them).

``RBAC_RULES`` names the Kubernetes permission behind each client method the console
calls (``Forbidden.operation``, set by ``cluster.k8s.call``); k8s/base/admin-rbac.yaml and,
for the fleet of model pools, k8s/components/inference-gateway/admin-fleet-rbac.yaml grant
exactly these (tests/admin/test_messages.py checks both ways).
"""

from __future__ import annotations

from webapp.access.auth import AdminIdentity
from webapp.access.errors import AuthError
from webapp.admin.audit import AuditError
from webapp.admin.errors import AdminError
from webapp.admin.sizing import SizingError
from webapp.cluster.errors import (
    ApiRejected,
    ClusterError,
    ClusterNotConfigured,
    ClusterUnavailable,
    Conflict,
    FleetError,
    Forbidden,
    InvalidModelSpec,
    InvalidPool,
    NodePoolError,
    NotFound,
    PoolCannotSchedule,
    SlotMissing,
    StrategyNotAllowed,
    SwitchInProgress,
)
from webapp.llm.errors import LLMError
from webapp.ui.safe_markdown import safe_markdown
from webapp.ui.text import literal

#: client method (``Forbidden.operation``) -> the RBAC rule it needs
RBAC_RULES: dict[str, str] = {
    "read_namespaced_deployment": "get on deployments (apps)",
    "patch_namespaced_deployment": "patch on deployments (apps)",
    "list_namespaced_replica_set": "list on replicasets (apps)",
    "list_namespaced_pod": "list on pods",
    "read_namespaced_pod_log": "get on pods/log",
    "list_namespaced_event": "list on events",
    "read_namespaced_service": "get on services",
    "patch_namespaced_service": "patch on services",
    "create_namespaced_lease": "create on leases (coordination.k8s.io)",
    "read_namespaced_lease": "get on leases (coordination.k8s.io)",
    "replace_namespaced_lease": "update on leases (coordination.k8s.io)",
    "list_node": "list on nodes (cluster-wide, a ClusterRole)",
    "connect_get_namespaced_service_proxy_with_path": (
        "get on services/proxy (the DCGM exporter's, a ClusterRole)"
    ),
    # the fleet of model pools (k8s/components/inference-gateway/admin-fleet-rbac.yaml)
    "list_namespaced_deployment": "list on deployments (apps)",
    "create_namespaced_deployment": "create on deployments (apps)",
    "delete_namespaced_deployment": "delete on deployments (apps)",
    "read_namespaced_deployment_scale": "get on deployments/scale (apps)",
    "patch_namespaced_deployment_scale": "patch on deployments/scale (apps)",
    "read_namespaced_config_map": "get on configmaps",
    "create_namespaced_config_map": "create on configmaps",
    "delete_namespaced_config_map": "delete on configmaps",
    "create_namespaced_service": "create on services",
    "delete_namespaced_service": "delete on services",
    "list_namespaced_horizontal_pod_autoscaler": "list on horizontalpodautoscalers (autoscaling)",
    "read_namespaced_horizontal_pod_autoscaler": "get on horizontalpodautoscalers (autoscaling)",
    "create_namespaced_horizontal_pod_autoscaler": (
        "create on horizontalpodautoscalers (autoscaling)"
    ),
    "replace_namespaced_horizontal_pod_autoscaler": (
        "update on horizontalpodautoscalers (autoscaling)"
    ),
    "delete_namespaced_horizontal_pod_autoscaler": (
        "delete on horizontalpodautoscalers (autoscaling)"
    ),
    "connect_get_namespaced_pod_proxy_with_path": "get on pods/proxy",
    # custom objects: one client method for every kind; the rule names each kind it is used on
    "get_namespaced_custom_object": (
        "get on httproutes, inferencepools, healthcheckpolicies, gcpbackendpolicies, "
        "scaledobjects, triggerauthentications (Gateway API, Inference Extension, GKE, KEDA)"
    ),
    "list_namespaced_custom_object": (
        "list on inferencepools, scaledobjects (Inference Extension, KEDA)"
    ),
    "create_namespaced_custom_object": (
        "create on inferencepools, healthcheckpolicies, gcpbackendpolicies, scaledobjects, "
        "triggerauthentications (Inference Extension, GKE, KEDA)"
    ),
    "replace_namespaced_custom_object": ("update on httproutes, scaledobjects (Gateway API, KEDA)"),
    "delete_namespaced_custom_object": (
        "delete on inferencepools, healthcheckpolicies, gcpbackendpolicies, scaledobjects "
        "(Inference Extension, GKE, KEDA)"
    ),
}


def admin_error_message(err: Exception) -> str:
    """One or two sentences: what went wrong and what to do. Never a traceback.

    Markdown-safe: what it quotes from the cluster, GKE or vLLM draws no image."""
    return safe_markdown(_message(err))


def _held(err: SwitchInProgress) -> str:
    since = f" (since {err.since})" if err.since else ""
    if err.pool != "vllm":  # a pool of the fleet: one action per pool at a time
        return (
            f"{err.holder} is already changing pool {err.pool}{since}. One change per pool "
            "runs at a time: wait for it to finish, or act on another pool."
        )
    return (
        f"A model switch by {err.holder} is already running{since}. Only one switch runs "
        "at a time: wait for it to finish, or ask them to cancel it."
    )


def _message(err: Exception) -> str:
    if isinstance(err, SwitchInProgress):
        return _held(err)
    if isinstance(err, Forbidden):
        rule = RBAC_RULES.get(err.operation)
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
    if isinstance(err, InvalidPool | FleetError):
        return err.message  # plain words naming the field or the pool, written for the page
    if isinstance(err, PoolCannotSchedule):
        return err.reason  # says why and what to change already
    if isinstance(err, StrategyNotAllowed):
        return f"This switch strategy cannot be used here: {err}"
    if isinstance(err, ClusterError):
        return f"Cluster error: {err}"
    if isinstance(err, NodePoolError | AuthError | AdminError):
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
