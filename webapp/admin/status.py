"""Every read the admin page shows, without Streamlit: the page never calls the cluster,
GKE or vLLM itself.

* ``connect_cluster`` / ``connect_node_pools`` build the clients (the page caches them);
* ``read_status`` gathers pods, GPU nodes and node pools for the status tables and what
  the chat endpoint lists, each part failing on its own;
* ``read_pools`` reads the node pools alone, with their live node counts (the node
  pools tab);
* ``pool_gpus`` counts the GPUs of the GPU nodes (the usage tab's default GPU-hours);
* ``log_pod`` picks the pod whose log the page offers first, ``pod_log`` reads its tail;
* ``sample_load`` adds one vLLM ``/metrics`` sample to the page's history.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from webapp.admin.serving import Serving, serving
from webapp.cluster.errors import ClusterError, NodePoolError
from webapp.cluster.inventory import (
    Inventory,
    PodInfo,
    gpu_capacity,
    inventory,
    pod_logs,
    pool_node_counts,
)
from webapp.cluster.k8s import Cluster, connect
from webapp.cluster.node_pools import NodePoolInfo, NodePools, with_node_counts
from webapp.cluster.node_pools_cache import CachedNodePools
from webapp.cluster.telemetry import Telemetry, read_gpu_telemetry
from webapp.llm.errors import LLMError
from webapp.llm.metrics import MetricsHistory, fetch_metrics
from webapp.llm.server import list_models


def connect_cluster(kubeconfig: str | None) -> Cluster:
    """The Kubernetes clients: ``kubeconfig``, else in-cluster, else ``KUBECONFIG``/~/.kube.
    Raises ``ClusterNotConfigured`` with a plain explanation."""
    return connect(kubeconfig or None)


def connect_node_pools(settings: Any) -> NodePools:
    """The GKE node-pool client for the cluster in ``settings``; ``GkeNotConfigured`` if unset.
    Its list of node pools is shared by the process's page runs, read again aside once older
    than the status refresh (``webapp.cluster.node_pools_cache``)."""
    return CachedNodePools.from_settings(settings, ttl_s=settings.admin_status_refresh_s)


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
    ``llm_url``, the models the chat endpoint lists (1 HTTP call, 2 s at most), all made at
    once: the page waits for the slowest (a GKE list takes a few hundred ms), not the sum.

    Either client may be None (not configured): that part is then simply absent.
    """
    with ThreadPoolExecutor(max_workers=3, thread_name_prefix="status") as pool:
        inventory_read = pool.submit(_inventory, cluster, namespace)
        pools_read = pool.submit(_node_pools, pools)
        models_read = pool.submit(_listed_models, llm_url, api_key)
        (inv, cerr), (listed, perr) = inventory_read.result(), pools_read.result()
        models = models_read.result()
    infos = None
    if listed is not None:  # live node counts (GPU and CPU pools) from Kubernetes, if read
        infos = tuple(with_node_counts(listed, inv.pool_node_counts) if inv else listed)
    return Status(inv, cerr, infos, perr, models)


def read_pools(cluster: Cluster | None, pools: NodePools | None) -> Status:
    """The node pools alone: the GKE list and, for the live node counts, one list of nodes
    (without pods or events), at once. Nothing is read when GKE is not configured; the
    nodes unreadable, the pools keep the counts GKE reports."""
    if pools is None:
        return Status(None, None, None, None)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="pools") as pool:
        counts_read = pool.submit(_node_counts, cluster)
        listed, perr = _node_pools(pools)
        counts = counts_read.result()
    infos = None
    if listed is not None:
        infos = tuple(with_node_counts(listed, counts) if counts is not None else listed)
    return Status(None, None, infos, perr)


def _node_counts(cluster: Cluster | None) -> dict[str, int] | None:
    if cluster is None:
        return None
    try:
        return pool_node_counts(cluster)
    except ClusterError:
        return None


def _inventory(
    cluster: Cluster | None, namespace: str
) -> tuple[Inventory | None, ClusterError | None]:
    if cluster is None:
        return None, None
    try:
        return inventory(cluster, namespace), None
    except ClusterError as exc:
        return None, exc


def _node_pools(
    pools: NodePools | None,
) -> tuple[Sequence[NodePoolInfo] | None, NodePoolError | None]:
    if pools is None:
        return None, None
    try:
        return pools.list_node_pools(), None
    except NodePoolError as exc:
        return None, exc


def pool_gpus(cluster: Cluster | None) -> int | None:
    """GPUs in the cluster's GPU nodes now (1 Kubernetes call); None without a cluster or
    when it cannot be read."""
    if cluster is None:
        return None
    try:
        return gpu_capacity(cluster)
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
