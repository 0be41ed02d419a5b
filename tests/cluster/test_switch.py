"""switch_model against the fake API server, with the real kubernetes client."""

from __future__ import annotations

import threading
from dataclasses import replace

import pytest

from tests.support.cluster import FAST, LLAMA, MISTRAL, NS, QWEN, seed_vllm
from webapp.cluster.errors import (
    Forbidden,
    InvalidModelSpec,
    SlotMissing,
    StrategyNotAllowed,
    SwitchInProgress,
)
from webapp.cluster.k8s import connect
from webapp.cluster.lock import LOCK_NAME, acquire_lock
from webapp.cluster.manifests import template_model
from webapp.cluster.patches import previous_template
from webapp.cluster.switch import SwitchResult, SwitchStep, switch_model


def switch(cluster, spec, **kw):
    """``switch_model`` of the seeded ``vllm`` Deployment and Service (alice, FAST by default)."""
    kw.setdefault("options", FAST)
    kw.setdefault("admin", "alice@example.com")
    return switch_model(cluster, spec, namespace=NS, deployment="vllm", service="vllm", **kw)


def run(cluster, spec, **kw):
    """Drive a switch to the end; return (steps, result)."""
    items = list(switch(cluster, spec, **kw))
    assert all(isinstance(i, SwitchStep) for i in items[:-1])
    assert isinstance(items[-1], SwitchResult)
    return items[:-1], items[-1]


def lease_holder(fake):
    lease = fake.get("leases", LOCK_NAME, NS)
    return (lease or {}).get("spec", {}).get("holderIdentity")


def test_in_place_switch_succeeds(fake, cluster):
    seed_vllm(fake)
    steps, result = run(cluster, MISTRAL)
    assert result.ok and result.outcome == "switched"
    assert (result.model_before, result.model_after) == ("llama-2-7b", MISTRAL.name)
    assert fake.served_models(NS) == [MISTRAL.name]
    dep = fake.get("deployments", "vllm", NS)
    assert dep["spec"]["strategy"] == {"type": "Recreate"}
    assert template_model(previous_template(dep)) == "llama-2-7b"
    snaps = [s.snapshot for s in steps if s.snapshot]
    assert snaps[-1].state == "ready"
    assert any("Application startup complete." in line for s in snaps for line in s.log_tail)
    assert fake.request_counts[("patch", "deployments")] == 1  # one request, never half-patched
    assert lease_holder(fake) is None  # lock released


def test_in_place_works_when_the_pool_holds_one_pod(one_node):
    seed_vllm(one_node)
    _, result = run(connect(one_node.kubeconfig_path), MISTRAL)
    assert result.outcome == "switched"
    assert one_node.served_models(NS) == [MISTRAL.name]


def test_in_place_same_model_is_unchanged(fake, cluster):
    seed_vllm(fake)
    _, result = run(cluster, LLAMA)
    assert result.outcome == "unchanged"
    assert fake.request_counts[("patch", "deployments")] == 0


def test_blue_green_flips_the_service_and_scales_old_down(fake, cluster):
    seed_vllm(fake)
    steps, result = run(cluster, MISTRAL, strategy="blue_green", model_probe=fake.model_probe)
    assert result.outcome == "switched" and result.strategy == "blue_green"
    assert fake.get("services", "vllm", NS)["spec"]["selector"] == {"app": "vllm-green"}
    assert fake.get("deployments", "vllm", NS)["spec"]["replicas"] == 0
    assert fake.wait_for(lambda f: f.served_models(NS) == [MISTRAL.name], 5)
    stages = [s.stage for s in steps]
    assert stages.index("verify") < stages.index("flipped") < stages.index("cleanup")
    # and back again: the idle slot "vllm" is reused, the selector flips back
    _, result = run(cluster, QWEN, strategy="blue_green", model_probe=fake.model_probe)
    assert result.outcome == "switched" and result.model_before == MISTRAL.name
    assert fake.get("services", "vllm", NS)["spec"]["selector"] == {"app": "vllm"}
    assert fake.get("deployments", "vllm-green", NS)["spec"]["replicas"] == 0


def test_blue_green_only_patches_the_shipped_slots(fake, cluster):
    """Both slots exist (as the manifests ship them): the switch and the switch back patch
    them, never create a Deployment (the Role has no create)."""
    seed_vllm(fake)
    fake.reset_counts()
    for spec in (MISTRAL, QWEN):
        _, result = run(cluster, spec, strategy="blue_green", model_probe=fake.model_probe)
        assert result.outcome == "switched"
    touched = {(r.verb, r.resource, r.name) for r in fake.requests if r.group == "apps"}
    assert not [r for r in fake.requests if r.verb == "create" and r.resource != "leases"]
    assert {name for verb, res, name in touched if res == "deployments"} == {"vllm", "vllm-green"}
    assert {verb for verb, res, _ in touched if res == "deployments"} == {"get", "patch"}


def test_blue_green_without_the_idle_slot_says_apply_the_manifests(fake, cluster):
    seed_vllm(fake, green=False)
    fake.reset_counts()
    with pytest.raises(SlotMissing) as err:
        run(cluster, MISTRAL, strategy="blue_green", model_probe=fake.model_probe)
    assert (err.value.namespace, err.value.deployment) == (NS, "vllm-green")
    assert fake.get("deployments", "vllm-green", NS) is None
    assert not [r for r in fake.requests if r.verb in ("create", "patch") and r.group == "apps"]
    assert fake.served_models(NS) == ["llama-2-7b"]
    assert lease_holder(fake) is None  # lock released


def test_blue_green_requires_a_probe(fake, cluster):
    seed_vllm(fake)
    with pytest.raises(StrategyNotAllowed):
        run(cluster, MISTRAL, strategy="blue_green")


def test_blue_green_refuses_when_model_not_listed(fake, cluster):
    seed_vllm(fake)
    _, result = run(cluster, MISTRAL, strategy="blue_green", model_probe=lambda url: ["other"])
    assert result.outcome == "rolled_back" and "/v1/models" in result.failure
    assert fake.get("services", "vllm", NS)["spec"]["selector"] == {"app": "vllm"}
    assert fake.get("deployments", "vllm-green", NS)["spec"]["replicas"] == 0


def test_blue_green_failure_keeps_old_model_serving(fake, cluster):
    seed_vllm(fake)
    fake.inject_fault(model=MISTRAL.hf_repo, kind="crash")
    _, result = run(cluster, MISTRAL, strategy="blue_green", model_probe=fake.model_probe)
    assert result.outcome == "rolled_back" and "crashed" in result.failure
    assert fake.get("services", "vllm", NS)["spec"]["selector"] == {"app": "vllm"}
    assert fake.served_models(NS) == ["llama-2-7b"]


@pytest.mark.parametrize(
    ("kind", "words"),
    [
        ("crash", "crashed"),
        ("oom", "OOMKilled"),
        ("image_pull", "image"),
    ],
)
def test_failed_switch_rolls_back(fake, cluster, kind, words):
    seed_vllm(fake)
    fake.inject_fault(model=QWEN.name, kind=kind)
    steps, result = run(cluster, QWEN)
    assert result.outcome == "rolled_back", result
    assert words in result.failure and words in result.message
    assert result.model_after == "llama-2-7b"
    assert any(s.stage == "rollback" for s in steps)
    assert fake.wait_for(lambda f: f.served_models(NS) == ["llama-2-7b"], 5)
    assert lease_holder(fake) is None


def test_image_pull_fault_by_image(fake, cluster):
    seed_vllm(fake)
    fake.inject_fault(image="registry.invalid/vllm:nope", kind="image_pull")
    steps, result = run(cluster, replace(MISTRAL, image="registry.invalid/vllm:nope"))
    assert result.outcome == "rolled_back" and "ImagePullBackOff" in result.failure
    snaps = [s for s in steps if s.snapshot]
    assert any(e.reason in ("Failed", "BackOff") for s in snaps for e in s.snapshot.events)


def test_progress_deadline_rolls_back():
    from tests.fakes.k8s_server import FakeCluster

    with FakeCluster(gpu_nodes=[{"name": "gpu-a"}], slow_factor=40) as fc:
        seed_vllm(fc, deadline_s=150)  # 150 s * time_scale 0.002 = 0.3 s in the fake
        fc.inject_fault(model=QWEN.name, kind="slow")
        _, result = run(connect(fc.kubeconfig_path), QWEN)
        assert result.outcome == "rolled_back"
        assert "ProgressDeadlineExceeded" in result.failure
        assert fc.wait_for(lambda f: f.served_models(NS) == ["llama-2-7b"], 5)


def test_unschedulable_shows_failed_scheduling_then_deadline():
    from tests.fakes.k8s_server import FakeCluster

    with FakeCluster(gpu_nodes=[{"name": "gpu-a"}]) as fc:
        seed_vllm(fc, deadline_s=250)
        big = replace(QWEN, tensor_parallel_size=2)
        steps, result = run(connect(fc.kubeconfig_path), big)
        assert result.outcome == "rolled_back"
        summaries = [s.snapshot.summary for s in steps if s.snapshot]
        assert any("Insufficient nvidia.com/gpu" in s for s in summaries)
        events = [e for s in steps if s.snapshot for e in s.snapshot.events]
        assert any(e.reason == "FailedScheduling" for e in events)


@pytest.mark.parametrize(
    ("autoscaler", "words"),
    [
        ("no_scale_up", "(NotTriggerScaleUp: pod didn't trigger scale-up: 1 max node group size"),
        ("off", "(no scale-up within 1 s)"),
    ],
)
def test_unschedulable_without_a_node_coming_rolls_back_by_itself(autoscaler, words):
    """A 2-GPU model on 1-GPU nodes: rolled back after the grace period, long before the
    progress deadline (here 200 s in the fake's time), and the message says why."""
    from tests.fakes.k8s_server import FakeCluster

    with FakeCluster(gpu_nodes=[{"name": "gpu-a"}]) as fc:
        seed_vllm(fc, deadline_s=100_000)
        fc.set_autoscaler(autoscaler)
        big = replace(QWEN, tensor_parallel_size=2)
        opts = replace(FAST, unschedulable_grace_s=1.0)
        steps, result = run(connect(fc.kubeconfig_path), big, options=opts)
        assert result.outcome == "rolled_back", result
        assert result.failure.startswith("the new pod cannot be scheduled: 0/1 nodes are")
        assert "1 Insufficient nvidia.com/gpu" in result.message and words in result.message
        assert result.message.endswith("llama-2-7b is served again.")
        assert "ProgressDeadlineExceeded" not in result.message
        assert fc.wait_for(lambda f: f.served_models(NS) == ["llama-2-7b"], 5)
        events = {e.reason for s in steps if s.snapshot for e in s.snapshot.events}
        assert autoscaler == "off" or "NotTriggerScaleUp" in events


def test_unschedulable_waits_while_the_autoscaler_adds_a_node():
    from tests.fakes.k8s_server import FakeCluster

    with FakeCluster(gpu_nodes=[{"name": "gpu-a"}]) as fc:
        seed_vllm(fc, deadline_s=100_000)
        fc.set_autoscaler("scale_up", node={"name": "gpu-big", "gpus": 2}, delay_s=1.5)
        big = replace(QWEN, tensor_parallel_size=2)
        steps, result = run(
            connect(fc.kubeconfig_path), big, options=replace(FAST, unschedulable_grace_s=0.2)
        )
        assert result.outcome == "switched", result
        assert fc.served_models(NS) == [QWEN.name]
        summaries = [s.snapshot.summary for s in steps if s.snapshot]
        assert any("autoscaler is adding" in s for s in summaries)


def test_cancel_rolls_back(fake, cluster):
    seed_vllm(fake)
    fake.slow_factor = 2000  # loads for minutes: the cancel always lands first
    fake.inject_fault(model=QWEN.name, kind="slow")
    cancel = threading.Event()
    items = []
    for item in switch(cluster, QWEN, cancel=cancel):
        items.append(item)
        if isinstance(item, SwitchStep) and item.stage == "rollout":
            cancel.set()
    result = items[-1]
    assert result.outcome == "rolled_back" and result.cancelled
    assert "Cancelled" in result.message
    assert fake.wait_for(lambda f: f.served_models(NS) == ["llama-2-7b"], 5)


def test_concurrent_switch_is_refused(fake, cluster):
    seed_vllm(fake)
    fake.inject_fault(model=QWEN.name, kind="slow")
    first = switch(cluster, QWEN)
    assert next(first).stage == "locked"
    with pytest.raises(SwitchInProgress) as err:
        run(cluster, MISTRAL, admin="bob@example.com")
    assert err.value.holder == "alice@example.com" and err.value.since
    for _ in first:  # alice finishes; the lock is free again
        pass
    assert lease_holder(fake) is None
    _, result = run(cluster, MISTRAL, admin="bob@example.com")
    assert result.outcome == "switched"


def test_expired_lock_can_be_taken_over(fake, cluster):
    from datetime import UTC, datetime, timedelta

    acquire_lock(
        cluster,
        NS,
        "crashed@example.com",
        duration_s=30,
        now=datetime.now(UTC) - timedelta(minutes=5),
    )
    lock = acquire_lock(cluster, NS, "bob@example.com")
    assert lease_holder(fake) == "bob@example.com"
    lock.release()
    assert lease_holder(fake) is None


def test_forbidden_patch_is_a_typed_error_and_releases_the_lock(fake, cluster):
    seed_vllm(fake)
    fake.forbid("patch", "deployments")
    with pytest.raises(Forbidden) as err:
        run(cluster, MISTRAL)
    assert "patch Deployment vllm/vllm" in err.value.action
    assert "forbidden" in err.value.detail
    assert lease_holder(fake) is None
    assert fake.served_models(NS) == ["llama-2-7b"]


def test_forbidden_lease_means_no_switch(fake, cluster):
    seed_vllm(fake)
    fake.forbid("create", "leases")
    with pytest.raises(Forbidden) as err:
        run(cluster, MISTRAL)
    assert "lock" in err.value.action
    assert fake.request_counts[("patch", "deployments")] == 0


def test_invalid_spec_touches_nothing(fake, cluster):
    seed_vllm(fake)
    fake.reset_counts()
    with pytest.raises(InvalidModelSpec):
        run(cluster, replace(MISTRAL, hf_repo="bad repo"))
    assert sum(fake.request_counts.values()) == 0
