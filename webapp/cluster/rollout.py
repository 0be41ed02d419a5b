"""Following a vLLM rollout: typed snapshots of conditions, pods, events and logs.

Short polling with a constant number of reads per tick; ``classify_rollout`` (pure)
decides ready / failed (crash loop, OOM, image pull, deadline, a pod no node can take
and the cluster autoscaler will not add one for) / progressing.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from webapp.cluster.inventory import EventInfo, parse_event, pod_reason, sort_events
from webapp.cluster.k8s import Cluster, call, parse_time
from webapp.cluster.pod_load import PodLoad, read_pod_load

RolloutState = Literal["progressing", "ready", "failed", "cancelled"]
FATAL_WAITING = {
    "ImagePullBackOff": "the container image cannot be pulled",
    "InvalidImageName": "the container image name is invalid",
    "CreateContainerConfigError": "the pod configuration is broken (missing Secret or key?)",
}
#: How long a new pod may stay unschedulable while the cluster autoscaler adds no node for it.
UNSCHEDULABLE_GRACE_S = 180.0
# the cluster autoscaler's verdicts, recorded as events on the pending pod
SCALE_UP = "TriggeredScaleUp"
NO_SCALE_UP = frozenset({"NotTriggerScaleUp", "FailedScaleUp"})

# ---------------------------------------------------------------- rollout status


@dataclass(frozen=True)
class Condition:
    type: str
    status: str
    reason: str
    message: str


@dataclass(frozen=True)
class PodProgress:
    """A pod of the rollout: the view shows phase, readiness and why it is stuck."""

    name: str
    phase: str
    ready: bool
    restarts: int
    node: str
    reason: str
    message: str
    ip: str
    new: bool  # belongs to the newest ReplicaSet


@dataclass(frozen=True)
class RolloutSnapshot:
    """One look at a rollout. ``state`` ready/failed/cancelled are terminal."""

    deployment: str
    state: RolloutState
    summary: str
    conditions: tuple[Condition, ...] = ()
    pods: tuple[PodProgress, ...] = ()
    events: tuple[EventInfo, ...] = ()
    log_tail: tuple[str, ...] = ()
    ready_replicas: int = 0
    desired_replicas: int = 0
    elapsed_s: float = 0.0
    load: PodLoad | None = None  # the new pod's load phases, once it exists

    @property
    def terminal(self) -> bool:
        return self.state != "progressing"


def _newest_rs_hash(replicasets: list[dict]) -> str | None:
    def rev(rs: dict) -> int:
        ann = rs["metadata"].get("annotations") or {}
        try:
            return int(ann.get("deployment.kubernetes.io/revision", 0))
        except ValueError:
            return 0

    if not replicasets:
        return None
    newest = max(replicasets, key=rev)
    return (newest["metadata"].get("labels") or {}).get("pod-template-hash")


def _container_failure(pods: list[dict], crash_threshold: int) -> str | None:
    """Why a container of ``pods`` will never start (OOM, crash loop, bad image), if it won't."""
    for pod in pods:
        for cs in (pod.get("status") or {}).get("containerStatuses") or []:
            last = (cs.get("lastState") or {}).get("terminated") or {}
            now = (cs.get("state") or {}).get("terminated") or {}
            if "OOMKilled" in (last.get("reason"), now.get("reason")):
                return (
                    "vLLM was killed for using too much memory (OOMKilled): choose a smaller "
                    "model, a shorter max_model_len or more GPUs."
                )
            if (cs.get("restartCount") or 0) >= crash_threshold:
                return (
                    f"vLLM crashed {cs['restartCount']} times while starting (CrashLoopBackOff); "
                    "see the log lines below."
                )
            waiting = (cs.get("state") or {}).get("waiting") or {}
            if waiting.get("reason") in FATAL_WAITING:
                return (
                    f"{FATAL_WAITING[waiting['reason']]} ({waiting['reason']}): "
                    f"{waiting.get('message', '')}".strip()
                )
    return None


def _unschedulable_since(pod: dict) -> datetime | None:
    """When the scheduler first failed to place ``pod`` (PodScheduled=False), else its creation."""
    for cond in (pod.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "PodScheduled" and cond.get("status") == "False":
            since = parse_time(cond.get("lastTransitionTime"))
            if since is not None:
                return since
    return parse_time((pod.get("metadata") or {}).get("creationTimestamp"))


def unschedulable_verdict(
    pod: dict, events: list[EventInfo], *, now: datetime, grace_s: float
) -> tuple[RolloutState, str]:
    """A new pod no node can take: progressing while the cluster autoscaler is adding a node
    (its latest word on the pod is ``TriggeredScaleUp``) or for ``grace_s``; after that,
    with no scale-up or a ``NotTriggerScaleUp``/``FailedScaleUp``, failed: it would only
    wait for the progress deadline (45 min) while, in place, nothing serves the chat."""
    _, message = pod_reason(pod)
    name = pod["metadata"]["name"]
    said = [
        e
        for e in events
        if e.kind == "Pod" and e.name == name and (e.reason == SCALE_UP or e.reason in NO_SCALE_UP)
    ]
    # newest first; on a tie the scale-up wins (never roll back while a node may be coming)
    latest = max(said, key=lambda e: (e.last_seen, e.reason == SCALE_UP), default=None)
    if latest is not None and latest.reason == SCALE_UP:
        return (
            "progressing",
            f"Waiting for the GPU node the cluster autoscaler is adding: {message}",
        )
    since = _unschedulable_since(pod)
    if since is None or (now - since).total_seconds() < grace_s:
        return "progressing", f"Waiting for a GPU node: {message}"
    autoscaler = (
        f"{latest.reason}: {latest.message.rstrip('.')}"
        if latest is not None
        else f"no scale-up within {grace_s:.0f} s"
    )
    return "failed", (
        f"the new pod cannot be scheduled: {message.rstrip('.')}; the cluster autoscaler did "
        f"not add a node ({autoscaler}). Choose GPUs the node pool has room for, or raise "
        "the pool's maximum number of nodes."
    )


def classify_rollout(
    deployment: dict,
    pods: list[dict],
    events: list[EventInfo],
    *,
    new_hash: str | None,
    crash_threshold: int = 3,
    now: datetime | None = None,
    unschedulable_grace_s: float = UNSCHEDULABLE_GRACE_S,
) -> tuple[RolloutState, str]:
    """Pure decision: is the rollout of ``deployment`` progressing, ready or failed, and why.

    ``now`` (default: the current time) dates how long a new pod has been unschedulable.
    """
    spec, status = deployment.get("spec") or {}, deployment.get("status") or {}
    desired = spec.get("replicas", 1)
    conds = {c.get("type"): c for c in status.get("conditions") or []}
    prog = conds.get("Progressing") or {}
    if status.get("observedGeneration", 0) < deployment["metadata"].get("generation", 0):
        return "progressing", "Waiting for the Deployment controller to see the change."
    new_pods = [
        p for p in pods if (p["metadata"].get("labels") or {}).get("pod-template-hash") == new_hash
    ]
    failure = _container_failure(new_pods, crash_threshold)
    if failure:
        return "failed", failure
    if prog.get("reason") == "ProgressDeadlineExceeded":
        secs = spec.get("progressDeadlineSeconds", 600)
        return "failed", (
            f"The new model did not become ready within {secs} s (ProgressDeadlineExceeded)."
        )
    updated = status.get("updatedReplicas", 0)
    if (
        updated >= desired
        and status.get("replicas", 0) == updated
        and status.get("availableReplicas", 0) >= desired
        and (desired == 0 or len(new_pods) >= desired)
    ):
        return "ready", f"{desired} of {desired} pod(s) ready."
    for pod in new_pods:
        reason, message = pod_reason(pod)
        if reason == "Unschedulable":
            return unschedulable_verdict(
                pod, events, now=now or datetime.now(UTC), grace_s=unschedulable_grace_s
            )
        if reason:
            return "progressing", f"New pod {pod['metadata']['name']}: {reason} {message}".strip()
    if any(e.reason == "FailedScheduling" for e in events):
        return "progressing", "Waiting for a GPU node (FailedScheduling)."
    ready = status.get("readyReplicas", 0)
    return "progressing", f"Loading the model: {ready} of {desired} pod(s) ready."


def rollout_status(
    cluster: Cluster,
    namespace: str,
    deployment: str,
    *,
    crash_threshold: int = 3,
    log_lines: int = 20,
    started: float | None = None,
    unschedulable_grace_s: float = UNSCHEDULABLE_GRACE_S,
) -> RolloutSnapshot:
    """Read a Deployment's rollout once: 4 list/get calls, plus 1 log read of the new pod
    (its tail, and the phases of its load with ``webapp.cluster.pod_load``)."""
    dep = call(
        f"read Deployment {namespace}/{deployment}",
        cluster.apps.read_namespaced_deployment,
        deployment,
        namespace,
    )
    selector = ",".join(f"{k}={v}" for k, v in dep["spec"]["selector"]["matchLabels"].items())
    rss = _items(
        f"list ReplicaSets of {deployment}",
        cluster.apps.list_namespaced_replica_set,
        namespace,
        selector,
    )
    pods = _items(
        f"list pods of {deployment}", cluster.core.list_namespaced_pod, namespace, selector
    )
    raw_events = _items(
        f"list events in namespace {namespace}", cluster.core.list_namespaced_event, namespace
    )
    new_hash = _newest_rs_hash(rss)
    evs = _rollout_events(deployment, pods, rss, new_hash, raw_events)
    state, summary = classify_rollout(
        dep, pods, evs, new_hash=new_hash, crash_threshold=crash_threshold,
        unschedulable_grace_s=unschedulable_grace_s,
    )  # fmt: skip
    progress = tuple(_pod_progress(p, new_hash) for p in pods)
    new_pods = [p for p in pods if any(q.new and q.name == p["metadata"]["name"] for q in progress)]
    load, tail = read_pod_load(cluster, namespace, new_pods, raw_events, log_lines=log_lines)
    status = dep.get("status") or {}
    return RolloutSnapshot(
        deployment=deployment,
        state=state,
        summary=summary,
        conditions=tuple(
            Condition(
                c.get("type", ""), c.get("status", ""), c.get("reason", ""), c.get("message", "")
            )
            for c in status.get("conditions") or []
        ),
        pods=progress,
        events=tuple(evs[:20]),
        log_tail=tail,
        ready_replicas=status.get("readyReplicas", 0),
        desired_replicas=dep["spec"].get("replicas", 1),
        elapsed_s=0.0 if started is None else time.monotonic() - started,
        load=load,
    )


def _rollout_events(
    deployment: str, pods: list, rss: list, new_hash: str | None, raw_events: list
) -> list[EventInfo]:
    """Events about the Deployment, its pods and its newest ReplicaSet, newest first."""
    names = {deployment} | {p["metadata"]["name"] for p in pods}
    names |= {
        rs["metadata"]["name"]
        for rs in rss
        if rs["metadata"]["labels"].get("pod-template-hash") == new_hash
    }
    return sort_events(e for e in map(parse_event, raw_events) if e.name in names)


def _items(
    action: str, list_fn: Callable[..., dict], namespace: str, selector: str | None = None
) -> list:
    """The ``items`` of a namespaced LIST, filtered by a label ``selector`` when one is given."""
    kwargs = {} if selector is None else {"label_selector": selector}
    return call(action, list_fn, namespace, **kwargs).get("items", [])


def _pod_progress(pod: dict, new_hash: str | None) -> PodProgress:
    status = pod.get("status") or {}
    reason, message = pod_reason(pod)
    return PodProgress(
        name=pod["metadata"]["name"],
        phase=status.get("phase", "Unknown"),
        ready=any(
            c.get("type") == "Ready" and c.get("status") == "True"
            for c in status.get("conditions") or []
        ),
        restarts=sum(cs.get("restartCount", 0) for cs in status.get("containerStatuses") or []),
        node=(pod.get("spec") or {}).get("nodeName") or "",
        reason=reason,
        message=message,
        ip=status.get("podIP") or "",
        new=(pod["metadata"].get("labels") or {}).get("pod-template-hash") == new_hash,
    )


def watch_rollout(
    cluster: Cluster,
    namespace: str,
    deployment: str,
    *,
    cancel: threading.Event | None = None,
    poll_s: float = 2.0,
    timeout_s: float | None = None,
    crash_threshold: int = 3,
    log_lines: int = 20,
    on_tick: Callable[[], None] | None = None,
    unschedulable_grace_s: float = UNSCHEDULABLE_GRACE_S,
) -> Iterator[RolloutSnapshot]:
    """Yield a snapshot per poll until ready/failed, or ``cancelled`` once ``cancel`` is set.

    ``timeout_s`` is a client-side guard on top of the Deployment's progress deadline.
    """
    started = time.monotonic()
    while True:
        if cancel is not None and cancel.is_set():
            yield RolloutSnapshot(deployment, "cancelled", "Cancelled by the admin.")
            return
        snap = rollout_status(
            cluster,
            namespace,
            deployment,
            crash_threshold=crash_threshold,
            log_lines=log_lines,
            started=started,
            unschedulable_grace_s=unschedulable_grace_s,
        )
        if not snap.terminal and timeout_s is not None and snap.elapsed_s > timeout_s:
            snap = _replace_state(snap, "failed", f"Not ready after {timeout_s:.0f} s.")
        yield snap
        if snap.terminal:
            return
        if on_tick is not None:
            on_tick()
        if cancel is not None:
            cancel.wait(poll_s)
        else:
            time.sleep(poll_s)


def _replace_state(snap: RolloutSnapshot, state: RolloutState, summary: str) -> RolloutSnapshot:
    from dataclasses import replace

    return replace(snap, state=state, summary=summary)
