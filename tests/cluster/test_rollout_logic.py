"""Pure decisions: which strategies fit the pool, rollout classification, lease expiry."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from webapp.cluster.inventory import EventInfo
from webapp.cluster.lock import lease_body, lease_holder
from webapp.cluster.rollout import classify_rollout
from webapp.cluster.scheduling import allowed_strategies


@pytest.mark.parametrize(
    ("needed", "free", "nodes", "max_nodes", "per_node", "blue_green"),
    [
        (1, {"a": 0, "b": 1}, 2, 2, 1, True),  # a free GPU now
        (2, {"a": 1, "b": 1}, 2, 2, 1, False),  # free GPUs split across nodes
        (1, {"a": 0}, 1, 2, 1, True),  # autoscaler can add a node
        (1, {"a": 0}, 2, 2, 1, False),  # pool at its maximum
        (1, {"a": 0}, 1, None, 1, False),  # no autoscaling
        (2, {"a": 0}, 1, 5, 1, False),  # nodes too small for the model
        (2, {"a": 0}, 1, 5, 2, True),
        (1, {}, 0, 2, 1, True),  # pool scaled to zero but may grow
    ],
)
def test_allowed_strategies(needed, free, nodes, max_nodes, per_node, blue_green):
    in_place, bg = allowed_strategies(
        gpus_needed=needed,
        free_gpus_by_node=free,
        pool_nodes=nodes,
        pool_max_nodes=max_nodes,
        gpus_per_node=per_node,
    )
    assert in_place.name == "in_place" and in_place.allowed
    assert bg.name == "blue_green" and bg.allowed is blue_green
    assert bg.reason


def _dep(gen=2, observed=2, replicas=1, updated=1, total=1, available=1, progressing=None):
    conds = []
    if progressing:
        conds.append({"type": "Progressing", "status": "False", "reason": progressing})
    return {
        "metadata": {"name": "vllm", "generation": gen},
        "spec": {"replicas": replicas, "progressDeadlineSeconds": 600},
        "status": {
            "observedGeneration": observed,
            "updatedReplicas": updated,
            "replicas": total,
            "availableReplicas": available,
            "conditions": conds,
        },
    }


def _pod(hash_="new", restarts=0, waiting=None, last=None, unschedulable=False):
    cs = {"name": "vllm", "restartCount": restarts, "state": {}}
    if waiting:
        cs["state"] = {"waiting": {"reason": waiting, "message": "m"}}
    if last:
        cs["lastState"] = {"terminated": {"reason": last}}
    conds = []
    if unschedulable:
        conds = [
            {
                "type": "PodScheduled",
                "status": "False",
                "reason": "Unschedulable",
                "message": "0/2 nodes are available: 2 Insufficient nvidia.com/gpu.",
            }
        ]
    return {
        "metadata": {"name": f"vllm-{hash_}-x", "labels": {"pod-template-hash": hash_}},
        "status": {"phase": "Pending", "containerStatuses": [cs], "conditions": conds},
    }


@pytest.mark.parametrize(
    ("dep", "pods", "state", "words"),
    [
        (_dep(), [_pod()], "ready", "1 of 1"),
        (_dep(observed=1), [_pod()], "progressing", "controller"),
        (_dep(available=0), [_pod()], "progressing", "Loading"),
        (_dep(updated=1, total=2), [_pod(), _pod("old")], "progressing", ""),
        (_dep(available=0), [_pod(restarts=3, waiting="CrashLoopBackOff")], "failed", "crashed 3"),
        (_dep(available=0), [_pod(restarts=1, last="OOMKilled")], "failed", "OOMKilled"),
        (_dep(available=0), [_pod(waiting="ImagePullBackOff")], "failed", "image"),
        (_dep(available=0), [_pod(waiting="ErrImagePull")], "progressing", "ErrImagePull"),
        (_dep(available=0), [_pod(waiting="CreateContainerConfigError")], "failed", "Secret"),
        (_dep(available=0, progressing="ProgressDeadlineExceeded"), [_pod()], "failed", "600 s"),
        (_dep(available=0), [_pod(unschedulable=True)], "progressing", "Insufficient"),
        (_dep(available=0), [_pod("old", restarts=9, last="OOMKilled")], "progressing", ""),
        (_dep(replicas=0, updated=0, total=0, available=0), [], "ready", "0 of 0"),
    ],
)
def test_classify_rollout(dep, pods, state, words):
    got, summary = classify_rollout(dep, pods, [], new_hash="new", crash_threshold=3)
    assert got == state
    assert words in summary


NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
NO_ROOM = "0/3 nodes are available: 3 Insufficient nvidia.com/gpu."


def _stamp(seconds_ago: float) -> str:
    return (NOW - timedelta(seconds=seconds_ago)).strftime("%Y-%m-%dT%H:%M:%SZ")


def _pending(seconds: float | None, *, created: float | None = None, name="vllm-new-x"):
    """A new pod the scheduler has failed to place for ``seconds`` (None: no timestamp)."""
    cond = {"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
            "message": NO_ROOM}  # fmt: skip
    if seconds is not None:
        cond["lastTransitionTime"] = _stamp(seconds)
    meta = {"name": name, "labels": {"pod-template-hash": "new"}}
    if created is not None:
        meta["creationTimestamp"] = _stamp(created)
    return {"metadata": meta, "status": {"phase": "Pending", "conditions": [cond]}}


def _ca(reason: str, seconds_ago: float, pod="vllm-new-x", message=""):
    """An event of the cluster autoscaler about ``pod``."""
    message = (
        message
        or {
            "TriggeredScaleUp": "pod triggered scale-up: [{gke-llm-gpu-pool-grp 1->2 (max: 3)}]",
            "NotTriggerScaleUp": "pod didn't trigger scale-up: 1 max node group size reached",
            "FailedScaleUp": "Node scale up in zones us-central1-a associated with this pod failed: "
            "GCE out of resources.",
        }[reason]
    )
    return EventInfo("Pod", pod, reason, message, "Normal", 1, _stamp(seconds_ago))


@pytest.mark.parametrize(
    ("pod", "events", "state", "words"),
    [
        (_pending(10), [], "progressing", "Waiting for a GPU node: 0/3"),
        (_pending(200), [], "failed", "no scale-up within 180 s"),
        (_pending(200), [_ca("NotTriggerScaleUp", 30)], "failed",
         "(NotTriggerScaleUp: pod didn't trigger scale-up: 1 max node group size reached)"),
        (_pending(200), [_ca("FailedScaleUp", 5)], "failed", "GCE out of resources"),
        (_pending(10), [_ca("NotTriggerScaleUp", 5)], "progressing", "Waiting for a GPU node"),
        # a node is coming: wait (the progress deadline still bounds it)
        (_pending(900), [_ca("TriggeredScaleUp", 800)], "progressing", "autoscaler is adding"),
        (_pending(200), [_ca("NotTriggerScaleUp", 100), _ca("TriggeredScaleUp", 50)],
         "progressing", "autoscaler is adding"),
        (_pending(200), [_ca("TriggeredScaleUp", 100), _ca("NotTriggerScaleUp", 50)],
         "failed", "NotTriggerScaleUp"),
        (_pending(200), [_ca("NotTriggerScaleUp", 50), _ca("TriggeredScaleUp", 50)],
         "progressing", "autoscaler is adding"),  # same second: a node may be coming
        (_pending(200), [_ca("TriggeredScaleUp", 50, pod="vllm-other")], "failed",
         "no scale-up"),  # another pod's scale-up says nothing about this one
        (_pending(None, created=200), [], "failed", "cannot be scheduled"),
        (_pending(None), [], "progressing", "Waiting for a GPU node"),  # no time: keep waiting
    ],
)  # fmt: skip
def test_unschedulable_new_pod(pod, events, state, words):
    got, summary = classify_rollout(
        _dep(available=0), [pod], events, new_hash="new", now=NOW, unschedulable_grace_s=180
    )
    assert (got, words in summary) == (state, True), summary
    if state == "failed":
        assert summary.startswith(
            "the new pod cannot be scheduled: 0/3 nodes are available: 3 Insufficient "
            "nvidia.com/gpu; the cluster autoscaler did not add a node ("
        )
        assert "raise the pool's maximum" in summary


def test_unschedulable_grace_is_a_parameter():
    pod, events = _pending(20), [_ca("NotTriggerScaleUp", 10)]
    kw = {"new_hash": "new", "now": NOW}
    assert classify_rollout(_dep(available=0), [pod], events, **kw)[0] == "progressing"
    short = classify_rollout(_dep(available=0), [pod], events, unschedulable_grace_s=15, **kw)
    assert short[0] == "failed"


@pytest.mark.parametrize(
    ("age_s", "duration", "holder", "held"),
    [
        (10, 60, "alice@example.com", True),
        (61, 60, "alice@example.com", False),
        (10, 60, "", False),
    ],
)
def test_lease_expiry(age_s, duration, holder, held):
    lease = lease_body(holder, NOW - timedelta(seconds=age_s), duration, "vllm")
    got = lease_holder(lease, NOW)
    assert (got is not None) is held
    if held:
        assert got[0] == holder and got[1].startswith("2026-01-01T11:59:50")
