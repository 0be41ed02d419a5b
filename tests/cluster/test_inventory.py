"""Inventory: pod and GPU node numbers, events, logs, constant number of API calls."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from tests.fakes.k8s_server import FakeCluster
from tests.support.cluster import NS, seed_vllm
from webapp.cluster import inventory as inv
from webapp.cluster.errors import Forbidden, NotFound
from webapp.cluster.k8s import connect


def build(fc: FakeCluster, nodes: int, pods_per_node: int) -> None:
    """``nodes`` GPU nodes (2 GPUs each, alternating spot) with ``pods_per_node`` 1-GPU pods
    on the first half of them, plus one CPU node."""
    fc.add_node("cpu-0", gpus=0, pool="default-pool", spot=False)
    for i in range(nodes):
        fc.add_node(f"gpu-{i:03d}", gpus=2, spot=i % 2 == 0, pool="gpu-pool")
    for i in range(nodes // 2):
        for j in range(pods_per_node):
            fc.add_pod(f"job-{i}-{j}", node=f"gpu-{i:03d}", namespace="batch", gpus=1)


@pytest.mark.parametrize(
    ("namespace", "requested"),
    [
        ("batch", [2, 2, 0, 0]),  # finished pods hold no GPU
        # Least privilege: only the asked namespace's pods are listed (its Role), so GPUs
        # held by pods of other namespaces are not counted.
        (NS, [0, 0, 0, 0]),
    ],
)
def test_gpu_nodes_numbers(namespace, requested):
    with FakeCluster() as fc:
        build(fc, nodes=4, pods_per_node=2)
        fc.add_pod("done", node="gpu-003", namespace="batch", gpus=1)
        fc.objects["pods"][("batch", "done")]["status"]["phase"] = "Succeeded"
        fc.reset_counts()
        nodes = inv.gpu_nodes(connect(fc.kubeconfig_path), namespace)
        assert dict(fc.request_counts) == {("list", "nodes"): 1, ("list", "pods"): 1}
        assert not [p for p in fc.requests if p.namespace is None and p.resource == "pods"]
    assert [n.name for n in nodes] == ["gpu-000", "gpu-001", "gpu-002", "gpu-003"]
    assert [n.gpu_requested for n in nodes] == requested
    assert [n.gpu_free for n in nodes] == [2 - r for r in requested]
    assert all(n.gpu_capacity == 2 and n.gpu_allocatable == 2 for n in nodes)
    assert [n.spot for n in nodes] == [True, False, True, False]
    assert {n.pool for n in nodes} == {"gpu-pool"}
    assert {n.accelerator for n in nodes} == {"nvidia-l4"}
    assert inv.free_gpus(nodes, "nvidia-l4") == {
        f"gpu-{i:03d}": 2 - r for i, r in enumerate(requested)
    }
    assert inv.free_gpus(nodes, "nvidia-h100-80gb") == {}


@pytest.mark.parametrize(("nodes", "pods_per_node"), [(4, 1), (50, 12)])
def test_inventory_uses_a_constant_number_of_calls(nodes, pods_per_node):
    with FakeCluster() as fc:
        build(fc, nodes, pods_per_node)
        seed_vllm(fc)
        cluster = connect(fc.kubeconfig_path)
        fc.reset_counts()
        snap = inv.inventory(cluster, NS)
        counts = dict(fc.request_counts)
    assert counts == {("list", "pods"): 1, ("list", "nodes"): 1, ("list", "events"): 1}
    assert len(snap.nodes) == nodes + 0  # the CPU node is not a GPU node
    requested = sum(n.gpu_requested for n in snap.nodes)
    assert requested == 1  # the vLLM pod; the "batch" pods are another namespace's
    assert [p.model for p in snap.pods] == ["llama-2-7b"]
    vllm = snap.pods[0]
    assert vllm.ready and vllm.phase == "Running" and vllm.restarts == 0 and vllm.node
    assert {e.reason for e in vllm.events} >= {"Scheduled", "Started"}


def test_pods_show_crash_reason_restarts_and_events(fake, cluster):
    fake.inject_fault(model="llama-2-7b", kind="crash")
    from tests.support.cluster import LLAMA
    from webapp.cluster import manifests as mf

    fake.create("deployments", mf.build_deployment("vllm", NS, LLAMA))
    assert fake.wait_for(
        lambda f: any(
            (p["status"].get("containerStatuses") or [{}])[0].get("restartCount", 0) >= 2
            for p in f.objects["pods"].values()
        ),
        10,
    )
    fake.reset_counts()
    pods = inv.pods(cluster, NS, label_selector="app=vllm")
    assert dict(fake.request_counts) == {("list", "pods"): 1, ("list", "events"): 1}
    [pod] = pods
    assert pod.restarts >= 2 and not pod.ready
    assert pod.reason in ("CrashLoopBackOff", "")  # between back-off and restart
    assert any(e.reason == "BackOff" and e.warning for e in pod.events)
    lines = inv.pod_logs(cluster, NS, pod.name, tail_lines=50)
    assert any("RuntimeError" in line for line in lines)
    assert len(inv.pod_logs(cluster, NS, pod.name, tail_lines=1)) == 1


def test_unschedulable_pod_reason(one_node):
    seed_vllm(one_node)
    from tests.support.cluster import MISTRAL
    from webapp.cluster import manifests as mf

    one_node.create("deployments", mf.build_deployment("other", NS, MISTRAL))
    assert one_node.wait_for(
        lambda f: any(e["reason"] == "FailedScheduling" for e in f.objects["events"].values()), 5
    )
    cluster = connect(one_node.kubeconfig_path)
    [pod] = inv.pods(cluster, NS, label_selector="app=other")
    assert pod.reason == "Unschedulable" and "Insufficient nvidia.com/gpu" in pod.message
    evs = inv.events(cluster, NS, involved_name=pod.name)
    assert [e.reason for e in evs] == ["FailedScheduling"]
    assert evs[0].message == "0/1 nodes are available: 1 Insufficient nvidia.com/gpu."


def test_forbidden_and_missing(fake, cluster):
    fake.forbid("list", "nodes")
    with pytest.raises(Forbidden) as err:
        inv.gpu_nodes(cluster, NS)
    assert err.value.action == "list nodes"
    with pytest.raises(NotFound):
        inv.pod_logs(cluster, NS, "no-such-pod")


@pytest.mark.parametrize(
    ("status", "reason"),
    [
        (
            {"containerStatuses": [{"state": {"waiting": {"reason": "ErrImagePull"}}}]},
            "ErrImagePull",
        ),
        (
            {
                "containerStatuses": [
                    {"state": {"running": {}}, "lastState": {"terminated": {"reason": "OOMKilled"}}}
                ]
            },
            "OOMKilled",
        ),
        ({"containerStatuses": [{"state": {"terminated": {"reason": "Completed"}}}]}, "Completed"),
        (
            {
                "conditions": [
                    {
                        "type": "PodScheduled",
                        "status": "False",
                        "reason": "Unschedulable",
                        "message": "m",
                    }
                ]
            },
            "Unschedulable",
        ),
        ({"phase": "Failed", "reason": "Evicted"}, "Evicted"),
        ({"phase": "Running"}, ""),
    ],
)
def test_pod_reason(status, reason):
    assert inv.pod_reason({"status": status})[0] == reason


def test_parse_pod_age_and_model():
    pod = {
        "metadata": {
            "name": "p",
            "namespace": "vllm",
            "creationTimestamp": "2026-01-01T00:00:00Z",
            "annotations": {"llm-console/model": "m"},
        },
        "spec": {"nodeName": "n"},
        "status": {
            "phase": "Running",
            "conditions": [{"type": "Ready", "status": "True"}],
            "containerStatuses": [{"restartCount": 2}, {"restartCount": 1}],
        },
    }
    info = inv.parse_pod(pod, now=datetime(2026, 1, 1, 0, 1, 30, tzinfo=UTC))
    assert (info.age_s, info.model, info.restarts, info.ready) == (90.0, "m", 3, True)
    assert info.ready_for_s == 90.0  # no Ready transition time: since creation


def test_parse_pod_of_the_base_manifest_names_the_served_model():
    """A pod as `kubectl apply -k` makes it, without the console's annotation (issue 9.1)."""
    from tests.support.admin_world import base_manifest_deployment

    template = base_manifest_deployment(annotated=False)["spec"]["template"]
    pod = {
        "metadata": {**template["metadata"], "name": "vllm-1", "namespace": "vllm",
                     "creationTimestamp": "2026-01-01T00:00:00Z"},
        "spec": {**template["spec"], "nodeName": "gpu-a"},
        "status": {"phase": "Running", "conditions": [
            {"type": "Ready", "status": "True", "lastTransitionTime": "2026-01-01T00:10:00Z"}]},
    }  # fmt: skip
    info = inv.parse_pod(pod, now=datetime(2026, 1, 1, 3, 10, tzinfo=UTC))
    assert (info.model, info.hf_repo) == ("llama-2-7b", "meta-llama/Llama-2-7b-hf")
    assert (info.gpus, info.accelerator, info.ready_for_s) == (1, "nvidia-l4", 3 * 3600.0)
