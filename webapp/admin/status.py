"""Every read the admin page shows, without Streamlit: the page never calls the cluster,
GKE or vLLM itself.

* ``connect_cluster`` / ``connect_node_pools`` build the clients (the page caches them);
* ``read_status`` gathers pods, GPU nodes and node pools for the status tables and what
  the chat endpoint lists, each part failing on its own;
* ``pool_gpus`` counts the GPUs of the GPU nodes (the usage tab's default GPU-hours);
* ``log_pod`` picks the pod whose log the page offers first, ``pod_log`` reads its tail;
* ``sample_load`` adds one vLLM ``/metrics`` sample to the page's history.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from webapp.admin.serving import Serving, serving
from webapp.cluster.errors import ClusterError, NodePoolError
from webapp.cluster.inventory import Inventory, PodInfo, gpu_nodes, inventory, pod_logs
from webapp.cluster.k8s import Cluster, connect
from webapp.cluster.node_pools import NodePoolInfo, NodePools, with_node_counts
from webapp.cluster.telemetry import Telemetry, read_gpu_telemetry
from webapp.llm.errors import LLMError
from webapp.llm.metrics import MetricsHistory, fetch_metrics
from webapp.llm.server import list_models


def connect_cluster(kubeconfig: str | None) -> Cluster:
    """The Kubernetes clients: ``kubeconfig``, else in-cluster, else ``KUBECONFIG``/~/.kube.
    Raises ``ClusterNotConfigured`` with a plain explanation."""
    return connect(kubeconfig or None)


def connect_node_pools(settings: Any) -> NodePools:
    """The GKE node-pool client for the cluster in ``settings``; ``GkeNotConfigured`` if unset."""
    return NodePools.from_settings(settings)


@dataclass(frozen=True)
class Status:
    """One refresh of the status tables; an error replaces the part it broke."""

    inventory: Inventory | None
    cluster_error: ClusterError | None
    pools: tuple[NodePoolInfo, ...] | None
    pools_error: NodePoolError | None
    listed_models: tuple[str, ...] | None = None  # /v1/models at the chat endpoint; None: no answer

    def serving(self, namespace: str) -> Serving:
        """The headline: what is served, on what, since when (``webapp.admin.serving``)."""
        pods = self.inventory.pods if self.inventory is not None else None
        return serving(pods, self.listed_models, namespace=namespace)


def _listed_models(llm_url: str | None, api_key: str | None) -> tuple[str, ...] | None:
    if not llm_url:
        return None
    try:
        return tuple(m.id for m in list_models(llm_url, api_key, timeout=2.0))
    except LLMError:
        return None


def read_status(
    cluster: Cluster | None,
    namespace: str,
    pools: NodePools | None,
    *,
    llm_url: str | None = None,
    api_key: str | None = None,
) -> Status:
    """Pods, GPU nodes and events (3 Kubernetes calls), node pools (1 GKE call) and, given
    ``llm_url``, the models the chat endpoint lists (1 HTTP call, 2 s at most).

    Either client may be None (not configured): that part is then simply absent.
    """
    inv, cerr = None, None
    try:
        inv = inventory(cluster, namespace) if cluster is not None else None
    except ClusterError as exc:
        cerr = exc
    infos, perr = None, None
    if pools is not None:
        try:
            listed = pools.list_node_pools()
            # live node counts (GPU and CPU pools) from Kubernetes; unknown without a cluster
            infos = tuple(with_node_counts(listed, inv.pool_node_counts) if inv else listed)
        except NodePoolError as exc:
            perr = exc
    return Status(inv, cerr, infos, perr, _listed_models(llm_url, api_key))


def pool_gpus(cluster: Cluster | None, namespace: str) -> int | None:
    """GPUs in the cluster's GPU nodes now (2 Kubernetes calls); None without a cluster or
    when it cannot be read."""
    if cluster is None:
        return None
    try:
        return sum(n.gpu_capacity for n in gpu_nodes(cluster, namespace))
    except ClusterError:
        return None


def log_pod(pods: Sequence[PodInfo]) -> str | None:
    """The pod whose log the page offers first: the newest pod serving a model (so the choice
    follows a model switch to the new vLLM pod), else the first pod; None without pods."""
    serving_pods = [p for p in pods if p.model]
    if serving_pods:
        return min(serving_pods, key=lambda p: p.age_s).name
    return pods[0].name if pods else None


def pod_log(cluster: Cluster, namespace: str, pod: str, *, tail_lines: int = 50) -> list[str]:
    """The last ``tail_lines`` lines of ``pod``'s log (1 Kubernetes call); ``NotFound`` when
    the pod is gone, another ``ClusterError`` when it cannot be read."""
    return pod_logs(cluster, namespace, pod, tail_lines=tail_lines)


def sample_load(history: MetricsHistory, llm_url: str, api_key: str | None) -> LLMError | None:
    """Read vLLM's ``/metrics`` once into ``history``; the error when it cannot be read
    (the history keeps its earlier samples)."""
    try:
        history.add(fetch_metrics(llm_url, api_key))
    except LLMError as exc:
        return exc
    return None


def read_gpus(settings: Any, cluster: Cluster | None) -> Telemetry:
    """Per-GPU telemetry from the first source that answers (``TelemetryUnavailable`` says,
    per source, why not and what turns it on)."""
    return read_gpu_telemetry(settings, cluster)
