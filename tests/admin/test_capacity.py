"""The capacity guard (``webapp.admin.capacity``): the pure verdict, table-driven, and
``require_capacity`` reading the fake Kubernetes, GKE and Compute Engine APIs."""

from __future__ import annotations

import pytest

from webapp.admin.capacity import CapacityRequest, Fit, check_capacity
from webapp.admin.errors import InvalidCapacityRequest
from webapp.cluster.inventory import GpuNode, Inventory
from webapp.cluster.node_pools import NodePoolInfo
from webapp.cluster.quota import Quota, RegionQuotas

L4, T4 = "nvidia-l4", "nvidia-tesla-t4"


def node(name, free=1, gpus=1, *, pool="gpu-pool", accel=L4, ready=True) -> GpuNode:
    return GpuNode(name, pool, accel, True, ready, gpus, gpus, gpus - free)


def pool(name="gpu-pool", *, gpus=1, accel=L4, auto=(0, 2), nodes=None, spot=True,
         zones=1, total=True) -> NodePoolInfo:  # fmt: skip
    return NodePoolInfo(
        name=name, machine_type="g2-standard-8", accelerator_type=accel,
        accelerator_count=gpus, initial_node_count=0, autoscaling_enabled=auto is not None,
        min_nodes=(auto or (0, 0))[0], max_nodes=(auto or (0, 0))[1], spot=spot,
        status="RUNNING", node_count=nodes, zones=zones, total_limits=total,
    )  # fmt: skip


def inv(*nodes: GpuNode) -> Inventory:
    counts: dict[str, int] = {}
    for n in nodes:
        counts[n.pool] = counts.get(n.pool, 0) + 1
    return Inventory((), tuple(nodes), (), counts)


def quotas(**metrics: tuple[float, float]) -> RegionQuotas:
    return RegionQuotas("us-central1", {m: Quota(m, *lu) for m, lu in metrics.items()})


ROOMY = quotas(PREEMPTIBLE_NVIDIA_L4_GPUS=(16, 0), NVIDIA_L4_GPUS=(8, 0))
FULL = quotas(PREEMPTIBLE_NVIDIA_L4_GPUS=(8, 8))


def req(replicas, per=1, gpu=L4) -> CapacityRequest:
    return CapacityRequest(gpu, per, replicas, "llama-2-7b")


# (request, nodes, pools, quota) -> (fit, fit_now, at_most, growth, words in the message)
CASES = {
    "free GPUs hold every replica": (
        req(2), [node("a"), node("b")], [pool(nodes=2)], ROOMY,
        Fit.NOW, 2, 2, {}, ["2 replicas of llama-2-7b (2 × L4) fit on free L4 GPUs now"],
    ),
    "two replicas of 1 GPU on one 2-GPU node": (
        req(2), [node("a", free=2, gpus=2)], [pool(gpus=2, nodes=1)], ROOMY,
        Fit.NOW, 2, 2, {}, ["fit on free L4 GPUs now"],
    ),
    "a 2-GPU replica needs both free GPUs on one node": (
        req(1, per=2), [node("a", free=1, gpus=2, pool="p2"), node("b", free=1, gpus=2,
                                                                      pool="p2")],
        [pool("p2", gpus=2, auto=(0, 2), nodes=2)], ROOMY,
        Fit.NO, 0, 0, {}, ["raise the node pool p2's maximum from 2 to 3 nodes",
                           "Until then no replica fits."],
    ),
    "the autoscaler adds the missing node": (
        req(2), [node("a")], [pool(auto=(0, 2), nodes=1)], ROOMY,
        Fit.AFTER_GROWTH, 1, None, {"gpu-pool": 1},
        ["1 of 2 replicas fits on free GPUs now", "adds 1 node(s) to gpu-pool"],
    ),
    "a pool scaled to zero grows from nothing": (
        req(2), [], [pool(auto=(0, 2), nodes=0)], ROOMY,
        Fit.AFTER_GROWTH, 0, None, {"gpu-pool": 2}, ["adds 2 node(s) to gpu-pool"],
    ),
    "a pool at its maximum: raise it": (
        req(3), [node("a", free=0), node("b")], [pool(auto=(0, 2), nodes=2)], ROOMY,
        Fit.NO, 1, 1, {},
        ["raise the node pool gpu-pool's maximum from 2 to 4 nodes",
         "choose fewer replicas (at most 1 fits)"],
    ),
    "a pool below its maximum but not enough: raise it by what is missing": (
        req(3), [node("a", free=0)], [pool(auto=(0, 2), nodes=1)], ROOMY,
        Fit.NO, 0, 1, {"gpu-pool": 1},
        ["raise the node pool gpu-pool's maximum from 2 to 4 nodes", "at most 1 fits"],
    ),
    "per-zone limits count in every zone": (
        req(3), [], [pool(auto=(0, 1), nodes=0, zones=3, total=False)], ROOMY,
        Fit.AFTER_GROWTH, 0, None, {"gpu-pool": 3}, ["adds 3 node(s)"],
    ),
    "no autoscaling: turn it on": (
        req(2), [node("a")], [pool(auto=None, nodes=1)], ROOMY,
        Fit.NO, 1, 1, {},
        ["turn on autoscaling for node pool gpu-pool with a maximum of 2 nodes"],
    ),
    "the spot GPU quota is used up": (
        req(2), [node("a")], [pool(auto=(0, 4), nodes=1)], FULL,
        Fit.NO, 1, 1, {},
        ["ask for GPU quota: PREEMPTIBLE_NVIDIA_L4_GPUS in us-central1 is 8, 8 used "
         "(1 more needed)", "choose fewer replicas (at most 1 fits)"],
    ),
    "quota allows part of the growth": (
        req(4), [], [pool(auto=(0, 4), nodes=0, spot=False)],
        quotas(NVIDIA_L4_GPUS=(8, 6)),
        Fit.NO, 0, 2, {"gpu-pool": 2},
        ["ask for GPU quota: NVIDIA_L4_GPUS in us-central1 is 8, 6 used (2 more needed)",
         "at most 2 fit"],
    ),
    "max and quota both short": (
        req(3), [node("a", free=0)], [pool(auto=(0, 2), nodes=1)],
        quotas(PREEMPTIBLE_NVIDIA_L4_GPUS=(2, 1)),
        Fit.NO, 0, 1, {"gpu-pool": 1},
        ["raise the node pool gpu-pool's maximum from 2 to 4 nodes",
         "PREEMPTIBLE_NVIDIA_L4_GPUS in us-central1 is 2, 1 used (2 more needed)"],
    ),
    "spot without a preemptible quota counts against the regular one": (
        req(1), [], [pool(nodes=0)], quotas(NVIDIA_L4_GPUS=(4, 4)),
        Fit.NO, 0, 0, {}, ["NVIDIA_L4_GPUS in us-central1 is 4, 4 used (1 more needed)"],
    ),
    "two pools: the second takes what the first cannot": (
        req(3), [], [pool("a-pool", auto=(0, 1), nodes=0), pool("b-pool", auto=(0, 2),
                                                                 nodes=0)], ROOMY,
        Fit.AFTER_GROWTH, 0, None, {"a-pool": 1, "b-pool": 2},
        ["adds 1 node(s) to a-pool, 2 node(s) to b-pool"],
    ),
    "quota unknown: growth allowed, said not checked": (
        req(2), [node("a")], [pool(nodes=1)], None,
        Fit.AFTER_GROWTH, 1, None, {"gpu-pool": 1}, ["The GPU quota was not checked (refused)"],
    ),
    "quota metric not listed in the region": (
        req(1), [], [pool(nodes=0)], quotas(CPUS=(24, 0)),
        Fit.AFTER_GROWTH, 0, None, {"gpu-pool": 1},
        ["lists no quota PREEMPTIBLE_NVIDIA_L4_GPUS: the quota was not checked"],
    ),
    "no pool of that GPU type": (
        req(1, gpu=T4), [node("a")], [pool(nodes=1)], ROOMY,
        Fit.NO, 0, 0, {},
        ["No node pool has T4 GPUs: create one (scripts/setup_gke.sh with "
         "GPU_TYPE=nvidia-tesla-t4 GPU_COUNT=1", "a GPU type the cluster has (L4)"],
    ),
    "nodes too small for one replica": (
        req(1, per=4), [node("a")], [pool(nodes=1)], ROOMY,
        Fit.NO, 0, 0, {},
        ["Nodes with L4 GPUs have at most 1; each replica of llama-2-7b needs 4 on one node",
         "GPU_COUNT=4"],
    ),
    "pools unknown and no free GPU: not checked, not refused": (
        req(1), [node("a", free=0)], None, None,
        Fit.UNCHECKED, 0, None, {}, ["node pools could not be read"],
    ),
    "pools unknown and no node of the type": (
        req(1), [], None, None,
        Fit.UNCHECKED, 0, None, {}, ["No L4 node is running", "was not checked"],
    ),
    "pools unknown but free GPUs suffice": (
        req(1), [node("a")], None, None,
        Fit.NOW, 1, 1, {}, ["1 replica of llama-2-7b (1 × L4) fits on free L4 GPUs now"],
    ),
    "a node that is not ready gives no free GPU": (
        req(1), [node("a", ready=False)], [pool(auto=(0, 1), nodes=1)], ROOMY,
        Fit.NO, 0, 0, {}, ["raise the node pool gpu-pool's maximum from 1 to 2 nodes"],
    ),
    "scaling down adds nothing": (
        CapacityRequest.for_scale(L4, 1, current=3, new=1), [], [], None,
        Fit.NOW, 0, None, {}, ["No replica is added"],
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_capacity_verdict(case):
    request, nodes, pools, quota, fit, fit_now, at_most, growth, words = case
    verdict = check_capacity(request, inv(*nodes), pools, quota, quota_reason="refused")
    assert (verdict.fit, verdict.fit_now, verdict.at_most, verdict.growth) == (
        fit,
        fit_now,
        at_most,
        growth,
    ), verdict.message
    for w in words:
        assert w in verdict.message
    assert verdict.blocks is (fit is Fit.NO)


@pytest.mark.parametrize(("current", "new", "adds"), [(1, 3, 2), (2, 2, 0), (3, 0, 0), (0, 1, 1)])
def test_a_scale_adds_the_difference(current, new, adds):
    assert CapacityRequest.for_scale(L4, 2, current=current, new=new).replicas == adds


@pytest.mark.parametrize(
    ("request_", "said"),
    [
        (CapacityRequest(L4, 0, 1), "at least 1 GPU"),
        (CapacityRequest(L4, 1, -1), "replicas to add must be a whole number"),
        (CapacityRequest(L4, 1.5, 1), "GPUs per replica must be a whole number"),  # type: ignore[arg-type]
        (CapacityRequest(L4, True, 1), "GPUs per replica"),  # type: ignore[arg-type]
        (CapacityRequest("", 1, 1), "Choose a GPU type"),
    ],
)
def test_impossible_requests_are_refused_plainly(request_, said):
    with pytest.raises(InvalidCapacityRequest, match=said):
        check_capacity(request_, inv(), [], None)
