"""What runs on the cluster: vLLM pods, GPU nodes, events and pod logs.

Each refresh costs a constant number of API calls — one LIST of pods, one of
nodes, one of events — never one call per pod or node, so the admin page stays
cheap on a pool of 50 nodes and hundreds of pods. The parsing functions are pure
(dicts as the API server returns them in, frozen dataclasses out).

Least privilege: pods are listed in the console's namespace only (its Role), nodes
cluster-wide (a read-only ClusterRole: nodes are cluster-scoped). So the GPUs a node has
"requested" are those of this namespace's pods; GPU pods of other namespaces are not
counted, and a node they fill looks free here (the scheduler still refuses it).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime

from webapp.cluster.k8s import Cluster, call, parse_time
from webapp.cluster.manifests import (
    ACCELERATOR_LABEL,
    GPU_RESOURCE,
    NODE_POOL_LABEL,
    SPOT_LABEL,
    template_hf_repo,
    template_model,
)

TERMINAL_PHASES = ("Succeeded", "Failed")


@dataclass(frozen=True)
class EventInfo:
    """One Kubernetes event about an object (pod, ReplicaSet, Deployment)."""

    kind: str
    name: str
    reason: str
    message: str
    type: str  # Normal | Warning
    count: int
    last_seen: str  # RFC 3339 time as sent by the API server

    @property
    def warning(self) -> bool:
        return self.type == "Warning"


@dataclass(frozen=True)
class PodInfo:
    """A pod as the admin page shows it."""

    name: str
    namespace: str
    phase: str
    ready: bool
    restarts: int
    node: str
    age_s: float
    reason: str  # waiting/terminated reason (CrashLoopBackOff, OOMKilled, Unschedulable...) or ""
    message: str
    model: str  # served name (what clients send as ``model``); "" for a pod that is no vLLM
    ip: str
    events: tuple[EventInfo, ...] = ()
    hf_repo: str = ""  # the hub repository vLLM loads (``--model``)
    gpus: int = 0  # GPUs the pod asks for
    accelerator: str = ""  # GKE accelerator label value from the pod's nodeSelector
    ready_for_s: float | None = None  # seconds since the pod became Ready; None if not ready


@dataclass(frozen=True)
class GpuNode:
    """A node with GPUs and how many of them the console namespace's pods have requested
    (other namespaces' pods are not counted: the console may not list them)."""

    name: str
    pool: str
    accelerator: str
    spot: bool
    ready: bool
    gpu_capacity: int
    gpu_allocatable: int
    gpu_requested: int

    @property
    def gpu_free(self) -> int:
        return max(0, self.gpu_allocatable - self.gpu_requested)


@dataclass(frozen=True)
class Inventory:
    """One refresh of the admin page: pods of the namespace, GPU nodes, recent events."""

    pods: tuple[PodInfo, ...]
    nodes: tuple[GpuNode, ...]
    events: tuple[EventInfo, ...]
    #: every node (GPU or not) per GKE node pool: GKE itself reports no current size
    pool_node_counts: dict[str, int] = field(default_factory=dict)


# ---------------------------------------------------------------- pure parsing


def _int(value: object) -> int:
    try:
        return int(str(value))
    except (TypeError, ValueError):
        return 0


def parse_event(ev: Mapping) -> EventInfo:
    """An ``EventInfo`` from a core/v1 Event dict."""
    obj = ev.get("involvedObject") or {}
    seen = (
        ev.get("lastTimestamp")
        or ev.get("eventTime")
        or (ev.get("metadata") or {}).get("creationTimestamp")
        or ""
    )
    return EventInfo(
        kind=obj.get("kind") or "",
        name=obj.get("name") or "",
        reason=ev.get("reason") or "",
        message=ev.get("message") or "",
        type=ev.get("type") or "Normal",
        count=_int(ev.get("count") or 1),
        last_seen=seen,
    )


def sort_events(events: Iterable[EventInfo]) -> list[EventInfo]:
    """Newest first."""
    return sorted(events, key=lambda e: e.last_seen, reverse=True)


def gpu_request(pod: Mapping) -> int:
    """GPUs a pod asks for (limits, else requests) over all its containers."""
    total = 0
    for c in (pod.get("spec") or {}).get("containers") or []:
        res = c.get("resources") or {}
        total += _int((res.get("limits") or {}).get(GPU_RESOURCE)) or _int(
            (res.get("requests") or {}).get(GPU_RESOURCE)
        )
    return total


def pod_reason(pod: Mapping) -> tuple[str, str]:
    """The most telling (reason, message) of a pod that is not simply running fine."""
    status = pod.get("status") or {}
    for cs in status.get("containerStatuses") or []:
        state = cs.get("state") or {}
        for key in ("waiting", "terminated"):
            if state.get(key) and state[key].get("reason"):
                return state[key]["reason"], state[key].get("message") or ""
        last = (cs.get("lastState") or {}).get("terminated") or {}
        if last.get("reason") == "OOMKilled":
            return "OOMKilled", last.get("message") or ""
    for cond in status.get("conditions") or []:
        if cond.get("type") == "PodScheduled" and cond.get("status") == "False":
            return cond.get("reason") or "Unschedulable", cond.get("message") or ""
    return status.get("reason") or "", status.get("message") or ""


def _seconds_since(then: datetime | None, now: datetime) -> float:
    return max(0.0, (now - then).total_seconds()) if then else 0.0


def parse_pod(
    pod: Mapping, events: Iterable[EventInfo] = (), now: datetime | None = None
) -> PodInfo:
    """A ``PodInfo`` from a core/v1 Pod dict and the events about it."""
    meta = pod.get("metadata") or {}
    status = pod.get("status") or {}
    statuses = status.get("containerStatuses") or []
    created = parse_time(meta.get("creationTimestamp"))
    now = now or datetime.now(UTC)
    reason, message = pod_reason(pod)
    ready_cond = next(
        (
            c
            for c in status.get("conditions") or []
            if c.get("type") == "Ready" and c.get("status") == "True"
        ),
        None,
    )
    ready_at = parse_time((ready_cond or {}).get("lastTransitionTime"))
    spec = pod.get("spec") or {}
    return PodInfo(
        name=meta.get("name") or "",
        namespace=meta.get("namespace") or "",
        phase=status.get("phase") or "Unknown",
        ready=ready_cond is not None,
        restarts=sum(_int(cs.get("restartCount")) for cs in statuses),
        node=spec.get("nodeName") or "",
        age_s=_seconds_since(created, now),
        reason=reason,
        message=message,
        model=template_model(pod) or "",
        ip=status.get("podIP") or "",
        events=tuple(e for e in events if e.kind == "Pod" and e.name == meta.get("name")),
        hf_repo=template_hf_repo(pod) or "",
        gpus=gpu_request(pod),
        accelerator=(spec.get("nodeSelector") or {}).get(ACCELERATOR_LABEL, ""),
        ready_for_s=None if ready_cond is None else _seconds_since(ready_at or created, now),
    )


def parse_nodes(nodes: Iterable[Mapping], pods: Iterable[Mapping]) -> list[GpuNode]:
    """GPU nodes (capacity or accelerator label) with the GPUs requested by non-finished pods."""
    requested: dict[str, int] = {}
    for pod in pods:
        node = (pod.get("spec") or {}).get("nodeName")
        if node and (pod.get("status") or {}).get("phase") not in TERMINAL_PHASES:
            requested[node] = requested.get(node, 0) + gpu_request(pod)
    out = []
    for node in nodes:
        meta = node.get("metadata") or {}
        labels = meta.get("labels") or {}
        status = node.get("status") or {}
        capacity = _int((status.get("capacity") or {}).get(GPU_RESOURCE))
        if not capacity and ACCELERATOR_LABEL not in labels:
            continue
        out.append(
            GpuNode(
                name=meta.get("name") or "",
                pool=labels.get(NODE_POOL_LABEL, ""),
                accelerator=labels.get(ACCELERATOR_LABEL, ""),
                spot=labels.get(SPOT_LABEL) == "true",
                ready=any(
                    c.get("type") == "Ready" and c.get("status") == "True"
                    for c in status.get("conditions") or []
                ),
                gpu_capacity=capacity,
                gpu_allocatable=_int((status.get("allocatable") or {}).get(GPU_RESOURCE)),
                gpu_requested=requested.get(meta.get("name") or "", 0),
            )
        )
    return sorted(out, key=lambda n: (n.pool, n.name))


def count_pool_nodes(nodes: Iterable[Mapping]) -> dict[str, int]:
    """Nodes per GKE node pool (label ``cloud.google.com/gke-nodepool``), GPU or not."""
    counts: dict[str, int] = {}
    for node in nodes:
        pool = ((node.get("metadata") or {}).get("labels") or {}).get(NODE_POOL_LABEL)
        if pool:
            counts[pool] = counts.get(pool, 0) + 1
    return counts


def free_gpus(nodes: Iterable[GpuNode], gpu_type: str | None = None) -> dict[str, int]:
    """Free GPUs per ready node (optionally only nodes with accelerator ``gpu_type``)."""
    return {
        n.name: n.gpu_free
        for n in nodes
        if n.ready and (gpu_type is None or n.accelerator == gpu_type)
    }


# ---------------------------------------------------------------- API reads


def events(
    cluster: Cluster, namespace: str, *, involved_name: str | None = None, limit: int = 100
) -> list[EventInfo]:
    """Recent events of a namespace (optionally about one object), newest first. One call."""
    kwargs = {"field_selector": f"involvedObject.name={involved_name}"} if involved_name else {}
    raw = call(
        f"list events in namespace {namespace}",
        cluster.core.list_namespaced_event,
        namespace,
        **kwargs,
    )
    return sort_events(parse_event(e) for e in raw.get("items") or [])[:limit]


def pods(
    cluster: Cluster,
    namespace: str,
    *,
    label_selector: str | None = None,
    now: datetime | None = None,
) -> list[PodInfo]:
    """Pods of a namespace with their recent events. Two calls (pods, events)."""
    kwargs = {"label_selector": label_selector} if label_selector else {}
    raw = call(
        f"list pods in namespace {namespace}",
        cluster.core.list_namespaced_pod,
        namespace,
        **kwargs,
    )
    grouped = _by_pod(events(cluster, namespace, limit=10_000))
    return [
        parse_pod(p, grouped.get(p["metadata"]["name"], ()), now) for p in raw.get("items") or []
    ]


def _namespace_pods(cluster: Cluster, namespace: str, *, active_only: bool) -> list[dict]:
    kwargs = (
        {"field_selector": "status.phase!=Succeeded,status.phase!=Failed"} if active_only else {}
    )
    raw = call(
        f"list pods in namespace {namespace}",
        cluster.core.list_namespaced_pod,
        namespace,
        **kwargs,
    )
    return raw.get("items") or []


def _by_pod(evs: Iterable[EventInfo]) -> dict[str, list[EventInfo]]:
    grouped: dict[str, list[EventInfo]] = {}
    for e in evs:
        if e.kind == "Pod":
            grouped.setdefault(e.name, []).append(e)
    return grouped


def gpu_nodes(cluster: Cluster, namespace: str) -> list[GpuNode]:
    """GPU nodes with capacity, allocatable and the GPUs requested by ``namespace``'s pods
    (other namespaces' pods are not counted, see the module's docstring). Two calls."""
    nodes = call("list nodes", cluster.core.list_node).get("items") or []
    return parse_nodes(nodes, _namespace_pods(cluster, namespace, active_only=True))


def gpu_capacity(cluster: Cluster) -> int:
    """GPUs of all GPU nodes (their capacity, whoever uses them). One call."""
    nodes = call("list nodes", cluster.core.list_node).get("items") or []
    return sum(n.gpu_capacity for n in parse_nodes(nodes, ()))


def pool_node_counts(cluster: Cluster) -> dict[str, int]:
    """Nodes per GKE node pool now, GPU or not (``count_pool_nodes``). One call."""
    return count_pool_nodes(call("list nodes", cluster.core.list_node).get("items") or [])


def pod_logs(
    cluster: Cluster,
    namespace: str,
    pod: str,
    *,
    tail_lines: int = 200,
    container: str | None = None,
    previous: bool = False,
) -> list[str]:
    """The last ``tail_lines`` log lines of a pod's container. One call."""
    kwargs: dict = {"tail_lines": int(tail_lines)}
    if container:
        kwargs["container"] = container
    if previous:
        kwargs["previous"] = True
    text = call(
        f"read the log of pod {namespace}/{pod}",
        cluster.core.read_namespaced_pod_log,
        pod,
        namespace,
        text=True,
        **kwargs,
    )
    return text.splitlines()


def inventory(cluster: Cluster, namespace: str, *, now: datetime | None = None) -> Inventory:
    """Pods of ``namespace``, all GPU nodes (GPUs requested by this namespace's pods) and the
    namespace's events: exactly three calls, made at once (the wait is the slowest call's,
    not the sum; a failed call raises as if they had been made one after another)."""
    with ThreadPoolExecutor(max_workers=3, thread_name_prefix="inventory") as pool:
        pods_read = pool.submit(_namespace_pods, cluster, namespace, active_only=False)
        nodes_read = pool.submit(call, "list nodes", cluster.core.list_node)
        events_read = pool.submit(events, cluster, namespace, limit=10_000)
        ns_pods, nodes_raw = pods_read.result(), nodes_read.result()
        nodes, evs = nodes_raw.get("items") or [], events_read.result()
    grouped = _by_pod(evs)
    return Inventory(
        pods=tuple(parse_pod(p, grouped.get(p["metadata"]["name"], ()), now) for p in ns_pods),
        nodes=tuple(parse_nodes(nodes, ns_pods)),
        events=tuple(evs[:100]),
        pool_node_counts=count_pool_nodes(nodes),
    )
