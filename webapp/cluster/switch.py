"""Switching the served model: lock, patch, watch the rollout, roll back on failure.

Two strategies:

* ``in_place`` — patch the existing Deployment's pod template (strategy ``Recreate``)
  in one request; the old pod goes away before the new one starts, so it works even
  when the pool can hold only one vLLM pod, at the price of a gap in service.
* ``blue_green`` — start the new model in the idle slot Deployment (``<name>-green`` or
  back to ``<name>``), wait until it is Ready and ``/v1/models`` lists the model, flip the
  Service selector, scale the old one to zero. Offered only when the pool has room
  (see :func:`allowed_strategies`). Both slots come with the manifests (the idle one at
  zero replicas): the console only patches the two named Deployments, it never creates one
  (RBAC cannot limit ``create`` by name), and says so (``SlotMissing``) when one is absent.

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
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from typing import Literal

from webapp.cluster.errors import NotFound, SlotMissing, StrategyNotAllowed
from webapp.cluster.k8s import Cluster, call
from webapp.cluster.lock import acquire_lock
from webapp.cluster.manifests import build_pod_template, template_model
from webapp.cluster.model_spec import VLLM_PORT, ModelSpec, check_object_name, validate_spec
from webapp.cluster.patches import (
    in_place_patch,
    other_slot_name,
    previous_template,
    rollback_patch,
    scale_patch,
    selector_patch,
    slot_update_patch,
)
from webapp.cluster.rollout import UNSCHEDULABLE_GRACE_S, RolloutSnapshot, watch_rollout
from webapp.cluster.scheduling import Strategy

# ---------------------------------------------------------------- switching


@dataclass(frozen=True)
class SwitchStep:
    """Progress of a switch: a stage name, a sentence, and the rollout snapshot if any."""

    stage: Literal["locked", "patched", "rollout", "verify", "flipped", "rollback", "cleanup"]
    message: str
    snapshot: RolloutSnapshot | None = None
    model_before: str | None = None  # set once known (the "patched" step): the served name


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
    unschedulable_grace_s: float = UNSCHEDULABLE_GRACE_S  # then fail unless a node is coming


def switch_model(
    cluster: Cluster,
    spec: ModelSpec,
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
    ``SlotMissing``, ``Forbidden``, ``NotFound``, ``Conflict``, ``ClusterUnavailable``. ``model_probe(url)``
    returns the model ids served at ``url`` (``http://<pod ip>:8000``); blue/green
    requires it, in place uses it to double-check when given.
    """
    validate_spec(spec)
    check_object_name("deployment", deployment)
    if strategy == "blue_green" and model_probe is None:
        raise StrategyNotAllowed("blue/green needs a model probe to verify the new model")
    if strategy not in ("in_place", "blue_green"):
        raise StrategyNotAllowed(f"unknown strategy {strategy!r}")
    opts = options or SwitchOptions()
    # the pool's Lease: the Deployment named here is the pool (blue/green's base slot)
    lock = acquire_lock(cluster, namespace, admin, duration_s=opts.lock_duration_s, pool=deployment)
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


def _follow(
    cluster, namespace, name, cancel, opts, lock, stage: Literal["rollout", "rollback"] = "rollout"
) -> Generator[SwitchStep, None, RolloutSnapshot | None]:
    """Yield a ``stage`` step per rollout snapshot; return the last snapshot (None if none)."""
    last = None
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
        unschedulable_grace_s=opts.unschedulable_grace_s,
    ):
        last = snap
        yield SwitchStep(stage, snap.summary, snap)
    return last


def _probe_ok(model_probe, snap: RolloutSnapshot, model: str, attempts: int, poll_s: float):
    """Ask ``/v1/models`` of the new ready pods until ``model`` is listed; returns (ok, seen)."""
    urls = [f"http://{p.ip}:{VLLM_PORT}" for p in snap.pods if p.new and p.ready and p.ip]
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


def _roll_out(
    cluster, namespace, name, spec, model_probe, cancel, opts, lock, *, verify_note: str = ""
) -> Generator[SwitchStep, None, tuple[str | None, bool]]:
    """Follow the rollout of Deployment ``name``, then check the new pods serve ``spec.name``.

    Yields the progress; returns ``(failure, cancelled)`` where ``failure`` is None when the
    model is served. Without ``model_probe`` a ready rollout counts as served; with one,
    ``verify_note`` (if any) is announced as a ``verify`` step before asking ``/v1/models``.
    """
    last = yield from _follow(cluster, namespace, name, cancel, opts, lock)
    if last is None:
        return "no rollout status", False
    if last.state != "ready":
        return last.summary, last.state == "cancelled"
    if model_probe is None:
        return None, False
    if verify_note:
        yield SwitchStep("verify", verify_note)
    ok, seen = _probe_ok(model_probe, last, spec.name, opts.probe_attempts, opts.poll_s)
    if ok:
        return None, False
    return f"the pod is ready but /v1/models lists {seen or 'nothing'}", False


def _why(spec: ModelSpec, failure: str, cancelled: bool) -> str:
    """The first words of a rollback message: cancelled, or why the switch failed."""
    return "Cancelled" if cancelled else f"The switch to {spec.name} failed: {failure.rstrip('.')}"


def _in_place(cluster, spec, namespace, name, model_probe, cancel, opts, lock):
    dep = _read_deployment(cluster, namespace, name)
    old_template = dep["spec"]["template"]
    before = template_model(old_template)
    labels = (old_template.get("metadata") or {}).get("labels") or {}
    new_template = build_pod_template(spec, labels=labels, base_template=old_template)
    if new_template == old_template and dep["spec"].get("replicas"):
        yield SwitchResult(
            "unchanged", "in_place", before, before, f"{spec.name} is already served."
        )
        return
    _patch_deployment(cluster, namespace, name, in_place_patch(dep, new_template), "switch model")
    yield SwitchStep(
        "patched",
        f"Deployment {name} now asks for {spec.name}; {before} stops first.",
        model_before=before,
    )
    failure, cancelled = yield from _roll_out(
        cluster, namespace, name, spec, model_probe, cancel, opts, lock
    )
    if failure is None:
        yield SwitchResult("switched", "in_place", before, spec.name, f"Now serving {spec.name}.")
        return
    yield from _roll_back_in_place(
        cluster, namespace, name, before, spec, failure, cancelled, opts, lock
    )


def _roll_back_in_place(cluster, namespace, name, before, spec, failure, cancelled, opts, lock):
    why = _why(spec, failure, cancelled)
    dep = _read_deployment(cluster, namespace, name)
    previous = previous_template(dep)
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
    _patch_deployment(cluster, namespace, name, rollback_patch(dep, previous), "roll back")
    last = yield from _follow(cluster, namespace, name, None, opts, lock, "rollback")
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
    before = template_model(active["spec"]["template"])
    target_name = other_slot_name(base, active_name)
    try:
        target = _read_deployment(cluster, namespace, target_name)
    except NotFound:
        raise SlotMissing(namespace, target_name) from None
    selector = target["spec"]["selector"]["matchLabels"]
    old_t = active["spec"]["template"]
    labels = {**((old_t.get("metadata") or {}).get("labels") or {}), **selector}
    template = build_pod_template(spec, labels=labels, base_template=old_t)
    _patch_deployment(
        cluster, namespace, target_name, slot_update_patch(target, template), "start model"
    )
    yield SwitchStep(
        "patched",
        f"Starting {spec.name} in {target_name}; {before} keeps serving meanwhile.",
        model_before=before,
    )
    failure, cancelled = yield from _roll_out(
        cluster, namespace, target_name, spec, model_probe, cancel, opts, lock,
        verify_note=f"Asking /v1/models of {target_name} for {spec.name}.",
    )  # fmt: skip
    if failure is None:
        svc = call(svc_action, cluster.core.read_namespaced_service, service_name, namespace)
        call(
            f"switch Service {namespace}/{service_name} to {target_name}",
            cluster.core.patch_namespaced_service,
            service_name,
            namespace,
            selector_patch(svc, selector),
            _content_type="application/json-patch+json",
        )
        yield SwitchStep("flipped", f"Service {service_name} now sends traffic to {target_name}.")
        _patch_deployment(cluster, namespace, active_name, scale_patch(0), "stop old model")
        yield SwitchStep("cleanup", f"Scaled {active_name} ({before}) to zero.")
        yield SwitchResult("switched", "blue_green", before, spec.name, f"Now serving {spec.name}.")
        return
    why = _why(spec, failure, cancelled)
    _patch_deployment(cluster, namespace, target_name, scale_patch(0), "stop the new model")
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
