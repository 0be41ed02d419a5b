"""Switching the served model: lock, patch, watch the rollout, roll back on failure.

Two strategies:

* ``in_place`` — patch the existing Deployment's pod template (strategy ``Recreate``)
  in one request; the old pod goes away before the new one starts, so it works even
  when the pool can hold only one vLLM pod, at the price of a gap in service.
* ``blue_green`` — start the new model in a second Deployment (``<name>-green`` or back
  to ``<name>``), wait until it is Ready and ``/v1/models`` lists the model, flip the
  Service selector, scale the old one to zero. Offered only when the pool has room
  (see :func:`allowed_strategies`).

Progress is a generator of typed values (``SwitchStep`` with a ``RolloutSnapshot``,
finally a ``SwitchResult``) that the admin page renders. Rollouts are followed by
short polling (a constant number of reads per tick); a failed or cancelled in-place
rollout puts the previous template back from the ``llm-console/previous-template``
annotation. Only one switch runs at a time: a ``coordination.k8s.io/v1`` Lease
``vllm-switch-lock`` held by the admin's e-mail, with an expiry.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Literal

from webapp.cluster import manifests as mf
from webapp.cluster.errors import Conflict, NotFound, StrategyNotAllowed, SwitchInProgress
from webapp.cluster.inventory import EventInfo, parse_event, pod_reason, sort_events
from webapp.cluster.k8s import Cluster, call

LOCK_NAME = "vllm-switch-lock"
Strategy = Literal["in_place", "blue_green"]
RolloutState = Literal["progressing", "ready", "failed", "cancelled"]
FATAL_WAITING = {
    "ImagePullBackOff": "the container image cannot be pulled",
    "InvalidImageName": "the container image name is invalid",
    "CreateContainerConfigError": "the pod configuration is broken (missing Secret or key?)",
}


# ---------------------------------------------------------------- strategies (pure)


@dataclass(frozen=True)
class StrategyOption:
    """Whether a strategy may be offered, and why (in plain words)."""

    name: Strategy
    allowed: bool
    reason: str


def allowed_strategies(
    *,
    gpus_needed: int,
    free_gpus_by_node: Mapping[str, int],
    pool_nodes: int,
    pool_max_nodes: int | None,
    gpus_per_node: int,
) -> tuple[StrategyOption, StrategyOption]:
    """Decide which strategies fit the GPU pool.

    Blue/green needs room for a second vLLM pod next to the running one: a node with
    ``gpus_needed`` free GPUs now, or an autoscaling pool below its maximum whose nodes
    have enough GPUs. In place always works (it frees the GPUs first).
    """
    in_place = StrategyOption(
        "in_place",
        True,
        "The running model stops, then the new one loads: chat is unavailable meanwhile.",
    )
    roomy = sorted(n for n, free in free_gpus_by_node.items() if free >= gpus_needed)
    if roomy:
        why = f"Node {roomy[0]} has {free_gpus_by_node[roomy[0]]} free GPU(s): "
        return in_place, StrategyOption(
            "blue_green", True, why + "the new model loads next to the old one."
        )
    if gpus_per_node < gpus_needed:
        why = f"Nodes of this pool have {gpus_per_node} GPU(s); the model needs {gpus_needed}."
        return in_place, StrategyOption("blue_green", False, why)
    if pool_max_nodes is not None and pool_nodes < pool_max_nodes:
        why = (
            f"The pool can grow from {pool_nodes} to {pool_max_nodes} nodes: the autoscaler "
            "adds a node for the new model while the old one keeps serving."
        )
        return in_place, StrategyOption("blue_green", True, why)
    limit = "has no autoscaling" if pool_max_nodes is None else f"is at its maximum ({pool_nodes})"
    why = (
        f"No node has {gpus_needed} free GPU(s) and the pool {limit}: two models cannot run "
        "side by side. Use in place, or raise the pool's maximum."
    )
    return in_place, StrategyOption("blue_green", False, why)


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


def classify_rollout(
    deployment: dict,
    pods: list[dict],
    events: list[EventInfo],
    *,
    new_hash: str | None,
    crash_threshold: int = 3,
) -> tuple[RolloutState, str]:
    """Pure decision: is the rollout of ``deployment`` progressing, ready or failed, and why."""
    spec, status = deployment.get("spec") or {}, deployment.get("status") or {}
    desired = spec.get("replicas", 1)
    conds = {c.get("type"): c for c in status.get("conditions") or []}
    prog = conds.get("Progressing") or {}
    if status.get("observedGeneration", 0) < deployment["metadata"].get("generation", 0):
        return "progressing", "Waiting for the Deployment controller to see the change."
    new_pods = [
        p for p in pods if (p["metadata"].get("labels") or {}).get("pod-template-hash") == new_hash
    ]
    for pod in new_pods:
        for cs in (pod.get("status") or {}).get("containerStatuses") or []:
            last = (cs.get("lastState") or {}).get("terminated") or {}
            now = (cs.get("state") or {}).get("terminated") or {}
            if "OOMKilled" in (last.get("reason"), now.get("reason")):
                return "failed", (
                    "vLLM was killed for using too much memory (OOMKilled): choose a smaller "
                    "model, a shorter max_model_len or more GPUs."
                )
            if (cs.get("restartCount") or 0) >= crash_threshold:
                return "failed", (
                    f"vLLM crashed {cs['restartCount']} times while starting (CrashLoopBackOff); "
                    "see the log lines below."
                )
            waiting = (cs.get("state") or {}).get("waiting") or {}
            if waiting.get("reason") in FATAL_WAITING:
                return "failed", (
                    f"{FATAL_WAITING[waiting['reason']]} ({waiting['reason']}): "
                    f"{waiting.get('message', '')}".strip()
                )
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
            return "progressing", f"Waiting for a GPU node: {message}"
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
) -> RolloutSnapshot:
    """Read a Deployment's rollout once: 4 list/get calls, plus 1 log read of the new pod."""
    dep = call(
        f"read Deployment {namespace}/{deployment}",
        cluster.apps.read_namespaced_deployment,
        deployment,
        namespace,
    )
    selector = ",".join(f"{k}={v}" for k, v in dep["spec"]["selector"]["matchLabels"].items())
    rss = call(
        f"list ReplicaSets of {deployment}",
        cluster.apps.list_namespaced_replica_set,
        namespace,
        label_selector=selector,
    ).get("items", [])
    pods = call(
        f"list pods of {deployment}",
        cluster.core.list_namespaced_pod,
        namespace,
        label_selector=selector,
    ).get("items", [])
    raw_events = call(
        f"list events in namespace {namespace}", cluster.core.list_namespaced_event, namespace
    ).get("items", [])
    new_hash = _newest_rs_hash(rss)
    names = {deployment} | {p["metadata"]["name"] for p in pods}
    names |= {
        rs["metadata"]["name"]
        for rs in rss
        if rs["metadata"]["labels"].get("pod-template-hash") == new_hash
    }
    evs = sort_events(e for e in map(parse_event, raw_events) if e.name in names)
    state, summary = classify_rollout(
        dep, pods, evs, new_hash=new_hash, crash_threshold=crash_threshold
    )
    progress = tuple(_pod_progress(p, new_hash) for p in pods)
    loading = next((p for p in progress if p.new and p.phase == "Running"), None)
    tail: tuple[str, ...] = ()
    if loading and log_lines:
        text = call(
            f"read the log of pod {loading.name}",
            cluster.core.read_namespaced_pod_log,
            loading.name,
            namespace,
            tail_lines=log_lines,
            text=True,
        )
        tail = tuple(text.splitlines())
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
    )


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


# ---------------------------------------------------------------- the lock (a Lease)


def _micro(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse_micro(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def lease_body(holder: str, now: datetime, duration_s: int, namespace: str) -> dict:
    """The Lease object for ``holder`` (pure)."""
    return {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": LOCK_NAME, "namespace": namespace},
        "spec": {
            "holderIdentity": holder,
            "leaseDurationSeconds": int(duration_s),
            "acquireTime": _micro(now),
            "renewTime": _micro(now),
        },
    }


def lease_holder(lease: dict, now: datetime) -> tuple[str, str] | None:
    """``(holder, since)`` if the Lease is held and not expired, else None (pure)."""
    spec = lease.get("spec") or {}
    holder = spec.get("holderIdentity")
    renewed = _parse_micro(spec.get("renewTime") or spec.get("acquireTime"))
    if not holder or renewed is None:
        return None
    if renewed + timedelta(seconds=spec.get("leaseDurationSeconds") or 0) <= now:
        return None
    return holder, spec.get("acquireTime") or ""


@dataclass
class SwitchLock:
    """A held Lease; ``renew()`` extends it, ``release()`` frees it."""

    cluster: Cluster
    namespace: str
    holder: str
    duration_s: int
    lease: dict = field(repr=False, default_factory=dict)
    renewed: float = 0.0

    def renew(self, *, force: bool = False) -> None:
        """Extend the Lease (at most every third of its duration unless ``force``)."""
        if not force and time.monotonic() - self.renewed < self.duration_s / 3:
            return
        body = dict(self.lease)
        body["spec"] = {**body["spec"], "renewTime": _micro(datetime.now(UTC))}
        self.lease = self._replace(body, "renew the model-switch lock")
        self.renewed = time.monotonic()

    def release(self) -> None:
        """Free the Lease if we still hold it (best effort: it expires anyway)."""
        try:
            current = call(
                "read the model-switch lock",
                self.cluster.coordination.read_namespaced_lease,
                LOCK_NAME,
                self.namespace,
            )
            if (current.get("spec") or {}).get("holderIdentity") != self.holder:
                return
            current["spec"] = {"leaseDurationSeconds": self.duration_s}
            self._replace(current, "release the model-switch lock")
        except (Conflict, NotFound):
            pass

    def _replace(self, body: dict, action: str) -> dict:
        return call(
            action,
            self.cluster.coordination.replace_namespaced_lease,
            LOCK_NAME,
            self.namespace,
            body,
        )


def acquire_lock(
    cluster: Cluster,
    namespace: str,
    holder: str,
    *,
    duration_s: int = 300,
    now: datetime | None = None,
) -> SwitchLock:
    """Take the ``vllm-switch-lock`` Lease for ``holder`` or raise ``SwitchInProgress``."""
    now = now or datetime.now(UTC)
    body = lease_body(holder, now, duration_s, namespace)
    lock = SwitchLock(cluster, namespace, holder, duration_s, renewed=time.monotonic())
    action = "take the model-switch lock"
    try:
        lock.lease = call(action, cluster.coordination.create_namespaced_lease, namespace, body)
        return lock
    except Conflict:
        pass
    current = call(action, cluster.coordination.read_namespaced_lease, LOCK_NAME, namespace)
    held = lease_holder(current, now)
    if held:
        raise SwitchInProgress(*held)
    body["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
    try:
        lock.lease = call(
            action, cluster.coordination.replace_namespaced_lease, LOCK_NAME, namespace, body
        )
    except Conflict:
        again = call(action, cluster.coordination.read_namespaced_lease, LOCK_NAME, namespace)
        raise SwitchInProgress(*(lease_holder(again, now) or ("another admin", ""))) from None
    return lock


# ---------------------------------------------------------------- switching


@dataclass(frozen=True)
class SwitchStep:
    """Progress of a switch: a stage name, a sentence, and the rollout snapshot if any."""

    stage: Literal["locked", "patched", "rollout", "verify", "flipped", "rollback", "cleanup"]
    message: str
    snapshot: RolloutSnapshot | None = None


@dataclass(frozen=True)
class SwitchResult:
    """How a switch ended. ``outcome``: switched | unchanged | rolled_back | rollback_failed."""

    outcome: Literal["switched", "unchanged", "rolled_back", "rollback_failed"]
    strategy: Strategy
    model_before: str | None
    model_after: str | None
    message: str
    failure: str = ""
    cancelled: bool = False

    @property
    def ok(self) -> bool:
        return self.outcome in ("switched", "unchanged")


SwitchProgress = SwitchStep | SwitchResult


@dataclass(frozen=True)
class SwitchOptions:
    """Tuning of a switch; defaults suit a real cluster, tests shrink the times."""

    poll_s: float = 2.0
    crash_threshold: int = 3
    log_lines: int = 20
    lock_duration_s: int = 300
    timeout_s: float | None = None  # client-side guard over the progress deadline
    probe_attempts: int = 30  # /v1/models checks after Ready (blue/green)


def switch_model(
    cluster: Cluster,
    spec: mf.ModelSpec,
    *,
    admin: str,
    namespace: str,
    deployment: str,
    service: str,
    strategy: Strategy = "in_place",
    model_probe: Callable[[str], list[str]] | None = None,
    cancel: threading.Event | None = None,
    options: SwitchOptions | None = None,
) -> Iterator[SwitchProgress]:
    """Switch the served model; yields ``SwitchStep``s and finally one ``SwitchResult``.

    Nothing happens until the generator is iterated. Raises (on iteration) the typed
    errors ``InvalidModelSpec``, ``SwitchInProgress``, ``StrategyNotAllowed``,
    ``Forbidden``, ``NotFound``, ``Conflict``, ``ClusterUnavailable``. ``model_probe(url)``
    returns the model ids served at ``url`` (``http://<pod ip>:8000``); blue/green
    requires it, in place uses it to double-check when given.
    """
    mf.validate_spec(spec)
    mf.check_object_name("deployment", deployment)
    if strategy == "blue_green" and model_probe is None:
        raise StrategyNotAllowed("blue/green needs a model probe to verify the new model")
    if strategy not in ("in_place", "blue_green"):
        raise StrategyNotAllowed(f"unknown strategy {strategy!r}")
    opts = options or SwitchOptions()
    lock = acquire_lock(cluster, namespace, admin, duration_s=opts.lock_duration_s)
    try:
        yield SwitchStep("locked", f"{admin} holds the model-switch lock.")
        if strategy == "in_place":
            yield from _in_place(
                cluster, spec, namespace, deployment, model_probe, cancel, opts, lock
            )
        else:
            yield from _blue_green(
                cluster, spec, namespace, deployment, service, model_probe, cancel, opts, lock
            )
    finally:
        lock.release()


def _read_deployment(cluster: Cluster, namespace: str, name: str) -> dict:
    return call(
        f"read Deployment {namespace}/{name}",
        cluster.apps.read_namespaced_deployment,
        name,
        namespace,
    )


def _patch_deployment(cluster: Cluster, namespace: str, name: str, body, what: str) -> dict:
    kind = (
        "application/json-patch+json" if isinstance(body, list) else "application/merge-patch+json"
    )
    return call(
        f"{what} (patch Deployment {namespace}/{name})",
        cluster.apps.patch_namespaced_deployment,
        name,
        namespace,
        body,
        _content_type=kind,
    )


def _follow(cluster, namespace, name, cancel, opts, lock) -> Iterator[SwitchStep]:
    for snap in watch_rollout(
        cluster,
        namespace,
        name,
        cancel=cancel,
        poll_s=opts.poll_s,
        timeout_s=opts.timeout_s,
        crash_threshold=opts.crash_threshold,
        log_lines=opts.log_lines,
        on_tick=lock.renew,
    ):
        yield SwitchStep("rollout", snap.summary, snap)


def _probe_ok(model_probe, snap: RolloutSnapshot, model: str, attempts: int, poll_s: float):
    """Ask ``/v1/models`` of the new ready pods until ``model`` is listed; returns (ok, seen)."""
    urls = [f"http://{p.ip}:{mf.VLLM_PORT}" for p in snap.pods if p.new and p.ready and p.ip]
    seen: list[str] = []
    for i in range(max(1, attempts)):
        for url in urls:
            try:
                seen = list(model_probe(url))
            except Exception:  # noqa: BLE001 - any probe failure means "not yet"
                seen = []
            if model in seen:
                return True, seen
        if i + 1 < attempts:
            time.sleep(poll_s)
    return False, seen


def _in_place(cluster, spec, namespace, name, model_probe, cancel, opts, lock):
    dep = _read_deployment(cluster, namespace, name)
    old_template = dep["spec"]["template"]
    before = mf.template_model(old_template)
    labels = (old_template.get("metadata") or {}).get("labels") or {}
    new_template = mf.build_pod_template(spec, labels=labels, base_template=old_template)
    if new_template == old_template and dep["spec"].get("replicas"):
        yield SwitchResult(
            "unchanged", "in_place", before, before, f"{spec.name} is already served."
        )
        return
    _patch_deployment(
        cluster, namespace, name, mf.in_place_patch(dep, new_template), "switch model"
    )
    yield SwitchStep(
        "patched", f"Deployment {name} now asks for {spec.name}; {before} stops first."
    )
    last = None
    for step in _follow(cluster, namespace, name, cancel, opts, lock):
        last = step.snapshot
        yield step
    failure = last.summary if last else "no rollout status"
    if last is not None and last.state == "ready":
        if model_probe is None:
            yield SwitchResult(
                "switched", "in_place", before, spec.name, f"Now serving {spec.name}."
            )
            return
        ok, seen = _probe_ok(model_probe, last, spec.name, opts.probe_attempts, opts.poll_s)
        if ok:
            yield SwitchResult(
                "switched", "in_place", before, spec.name, f"Now serving {spec.name}."
            )
            return
        failure = f"the pod is ready but /v1/models lists {seen or 'nothing'}"
    cancelled = last is not None and last.state == "cancelled"
    yield from _roll_back_in_place(
        cluster, namespace, name, before, spec, failure, cancelled, opts, lock
    )


def _roll_back_in_place(cluster, namespace, name, before, spec, failure, cancelled, opts, lock):
    why = "Cancelled" if cancelled else f"The switch to {spec.name} failed: {failure.rstrip('.')}"
    dep = _read_deployment(cluster, namespace, name)
    previous = mf.previous_template(dep)
    if previous is None:
        yield SwitchResult(
            "rollback_failed",
            "in_place",
            before,
            None,
            f"{why}. No previous template is stored, so nothing could be rolled back.",
            failure,
            cancelled,
        )
        return
    yield SwitchStep("rollback", f"{why}. Rolling back to {before}.")
    _patch_deployment(cluster, namespace, name, mf.rollback_patch(dep, previous), "roll back")
    last = None
    for step in _follow(cluster, namespace, name, None, opts, lock):
        last = step.snapshot
        yield SwitchStep("rollback", step.message, step.snapshot)
    if last is not None and last.state == "ready":
        yield SwitchResult(
            "rolled_back",
            "in_place",
            before,
            before,
            f"{why}. {before} is served again.",
            failure,
            cancelled,
        )
    else:
        detail = last.summary if last else "no status"
        yield SwitchResult(
            "rollback_failed",
            "in_place",
            before,
            None,
            f"{why}. Rolling back to {before} failed too: {detail}",
            failure,
            cancelled,
        )


def active_deployment(cluster: Cluster, namespace: str, base: str, service: dict) -> dict:
    """The slot Deployment (``base`` or ``base-green``) whose selector the Service uses."""
    selector = (service.get("spec") or {}).get("selector") or {}
    for name in (base, f"{base}-green"):
        try:
            dep = _read_deployment(cluster, namespace, name)
        except NotFound:
            continue
        if dep["spec"]["selector"].get("matchLabels") == selector:
            return dep
    raise StrategyNotAllowed(
        f"Service {service['metadata']['name']} selects {selector}, which matches neither "
        f"Deployment {base} nor {base}-green; blue/green cannot know which one is live."
    )


def _blue_green(cluster, spec, namespace, base, service_name, model_probe, cancel, opts, lock):
    svc_action = f"read Service {namespace}/{service_name}"
    svc = call(svc_action, cluster.core.read_namespaced_service, service_name, namespace)
    active = active_deployment(cluster, namespace, base, svc)
    active_name = active["metadata"]["name"]
    before = mf.template_model(active["spec"]["template"])
    target_name = mf.other_slot_name(base, active_name)
    try:
        target = _read_deployment(cluster, namespace, target_name)
    except NotFound:
        target = None
    active_sel = active["spec"]["selector"]["matchLabels"]
    if target is None:
        selector = mf.slot_labels(active_sel, active_name, target_name, base)
    else:
        selector = target["spec"]["selector"]["matchLabels"]
    old_t = active["spec"]["template"]
    labels = {**((old_t.get("metadata") or {}).get("labels") or {}), **selector}
    template = mf.build_pod_template(spec, labels=labels, base_template=old_t)
    if target is None:
        body = mf.green_deployment(active, target_name, selector, template)
        call(
            f"create Deployment {namespace}/{target_name}",
            cluster.apps.create_namespaced_deployment,
            namespace,
            body,
        )
    else:
        _patch_deployment(
            cluster, namespace, target_name, mf.slot_update_patch(target, template), "start model"
        )
    yield SwitchStep(
        "patched", f"Starting {spec.name} in {target_name}; {before} keeps serving meanwhile."
    )
    last = None
    for step in _follow(cluster, namespace, target_name, cancel, opts, lock):
        last = step.snapshot
        yield step
    failure = last.summary if last else "no rollout status"
    if last is not None and last.state == "ready":
        yield SwitchStep("verify", f"Asking /v1/models of {target_name} for {spec.name}.")
        ok, seen = _probe_ok(model_probe, last, spec.name, opts.probe_attempts, opts.poll_s)
        if ok:
            svc = call(svc_action, cluster.core.read_namespaced_service, service_name, namespace)
            call(
                f"switch Service {namespace}/{service_name} to {target_name}",
                cluster.core.patch_namespaced_service,
                service_name,
                namespace,
                mf.selector_patch(svc, selector),
                _content_type="application/json-patch+json",
            )
            yield SwitchStep(
                "flipped", f"Service {service_name} now sends traffic to {target_name}."
            )
            _patch_deployment(cluster, namespace, active_name, mf.scale_patch(0), "stop old model")
            yield SwitchStep("cleanup", f"Scaled {active_name} ({before}) to zero.")
            yield SwitchResult(
                "switched", "blue_green", before, spec.name, f"Now serving {spec.name}."
            )
            return
        failure = f"the pod is ready but /v1/models lists {seen or 'nothing'}"
    cancelled = last is not None and last.state == "cancelled"
    why = "Cancelled" if cancelled else f"The switch to {spec.name} failed: {failure.rstrip('.')}"
    _patch_deployment(cluster, namespace, target_name, mf.scale_patch(0), "stop the new model")
    yield SwitchStep("rollback", f"{why}. Scaled {target_name} to zero.")
    yield SwitchResult(
        "rolled_back",
        "blue_green",
        before,
        before,
        f"{why}. {before} kept serving the whole time; users saw no change.",
        failure,
        cancelled,
    )
