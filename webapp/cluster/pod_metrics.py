"""A model pool's live numbers: vLLM's Prometheus ``/metrics`` of each of its ready replicas,
read through the API server's pod proxy (``pods/NAME:8000/proxy/metrics``).

The admin pod needs no network path to the GPU pods, only RBAC ``get`` on ``pods/proxy`` in the
namespace (pod names are generated: no resourceNames; k8s/components/inference-gateway
/admin-fleet-rbac.yaml). A Service proxy would reach one replica per request; the fleet table
and the canary need every replica, so the pods are listed (the pool's labels,
``pools.pool_labels``) and each ready one is read.

``pod_metrics_texts`` gives one ``PodMetrics`` per ready replica, a replica that does not
answer marked with its reason (the fleet table shows "—" for it and keeps the row);
``pool_metrics_text`` joins the texts and raises ``PodMetricsUnavailable`` when any replica
cannot be read (a missing replica's counters would look like a reset to the canary).
Parsing is ``webapp.llm.metrics``'s; nothing here parses.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from webapp.cluster import k8s
from webapp.cluster.errors import (
    ClusterError,
    ClusterUnavailable,
    Forbidden,
    NotFound,
    PodMetricsUnavailable,
)
from webapp.cluster.k8s import Cluster
from webapp.cluster.model_spec import VLLM_PORT
from webapp.cluster.pools import pool_labels

METRICS_TIMEOUT_S = 3.0
MAX_PARALLEL = 8  # replicas read at once


@dataclass(frozen=True)
class PodMetrics:
    """One ready replica's /metrics: ``text`` as served, or None and ``problem`` in words."""

    pod: str
    text: str | None
    problem: str | None = None


def _ready(pod: dict) -> bool:
    status = pod.get("status") or {}
    if status.get("phase") != "Running" or (pod.get("metadata") or {}).get("deletionTimestamp"):
        return False
    return any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in status.get("conditions") or []
    )


def ready_pods(cluster: Cluster, ns: str, pool: str) -> list[str]:
    """Names of the pool's ready vLLM replicas (sorted), from one pod list by its labels."""
    selector = ",".join(f"{k}={v}" for k, v in pool_labels(pool).items())
    pods = k8s.call(
        f"list the pods of pool {ns}/{pool}",
        cluster.core.list_namespaced_pod,
        ns,
        label_selector=selector,
    )["items"]
    return sorted(p["metadata"]["name"] for p in pods if _ready(p))


def _reason(exc: ClusterError, timeout: float) -> str:
    if isinstance(exc, Forbidden):
        if "proxy" in exc.operation:
            return "the console may not read pods through the proxy (RBAC: get pods/proxy)"
        return "the console may not list the pool's pods (RBAC: list pods)"
    if isinstance(exc, NotFound):
        return "the pod is gone"
    text = str(exc)
    if "Timeout" in text:
        return f"it did not answer within {timeout:g} s"
    if isinstance(exc, ClusterUnavailable) and "cannot reach" in text:
        return "the Kubernetes API cannot be reached"
    return "the model server did not answer (HTTP 503 from the proxy)"


def read_pod_metrics(
    cluster: Cluster, ns: str, pod: str, *, timeout: float = METRICS_TIMEOUT_S
) -> str:
    """One pod's /metrics text through the pod proxy (no retries, ``timeout`` seconds); a
    failure is the cluster's typed error (``k8s.call``)."""
    return k8s.call(
        f"read /metrics of pod {ns}/{pod} through the pod proxy",
        k8s.no_retry_core(cluster).connect_get_namespaced_pod_proxy_with_path,
        f"{pod}:{VLLM_PORT}",
        ns,
        "metrics",
        text=True,
        _request_timeout=(timeout, timeout),
    )


def pod_metrics_texts(
    cluster: Cluster, ns: str, pool: str, *, timeout: float = METRICS_TIMEOUT_S
) -> list[PodMetrics]:
    """Every ready replica's /metrics, one ``PodMetrics`` each in pod-name order (a failed
    read has its ``problem``), read in parallel (up to ``MAX_PARALLEL``: a pool of silent
    replicas costs about one ``timeout``, not one per replica). The pod list itself failing
    raises the cluster's typed error."""
    pods = ready_pods(cluster, ns, pool)
    if len(pods) <= 1:
        return [_one(cluster, ns, pod, timeout) for pod in pods]
    with ThreadPoolExecutor(max_workers=min(MAX_PARALLEL, len(pods))) as workers:
        return list(workers.map(lambda pod: _one(cluster, ns, pod, timeout), pods))


def _one(cluster: Cluster, ns: str, pod: str, timeout: float) -> PodMetrics:
    try:
        return PodMetrics(pod, read_pod_metrics(cluster, ns, pod, timeout=timeout))
    except ClusterError as exc:
        return PodMetrics(pod, None, _reason(exc, timeout))


def pool_metrics_text(
    cluster: Cluster, ns: str, pool: str, *, timeout: float = METRICS_TIMEOUT_S
) -> str:
    """The pool's /metrics: its ready replicas' texts one after the other (summing a series
    over them gives the pool's). ``PodMetricsUnavailable`` when the pool has no ready replica,
    when any replica cannot be read, or when its pods cannot be listed."""
    try:
        pods = pod_metrics_texts(cluster, ns, pool, timeout=timeout)
    except ClusterError as exc:
        raise PodMetricsUnavailable(pool, _reason(exc, timeout)) from None
    if not pods:
        raise PodMetricsUnavailable(pool, "it has no ready replica")
    for p in pods:
        if p.text is None:
            raise PodMetricsUnavailable(pool, p.problem or "no answer", pod=p.pod)
    return "".join(p.text if p.text.endswith("\n") else p.text + "\n" for p in pods if p.text)
