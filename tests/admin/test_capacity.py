"""The capacity guard (``webapp.admin.capacity``): the pure verdict, table-driven, and
``require_capacity`` reading the fake Kubernetes, GKE and Compute Engine APIs."""

from __future__ import annotations

import re
from functools import partial

import pytest

from tests.fakes.k8s_server import FakeCluster
from tests.support.admin_world import CLUSTER, LOCATION, NS, PROJECT, fake_gke, gke_settings
from webapp.admin.capacity import (
    CapacityRequest,
    Fit,
    check_capacity,
    quota_reader,
    require_capacity,
)
from webapp.admin.errors import InvalidCapacityRequest, NotEnoughCapacity
from webapp.admin.messages import admin_error_message
from webapp.cluster.inventory import GpuNode, Inventory
from webapp.cluster.k8s import connect
from webapp.cluster.node_pools import NodePoolInfo, NodePools
from webapp.cluster.quota import Quota, RegionQuotas, gpu_quotas
from webapp.settings import Settings

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
    "a per-zone maximum is said per zone too": (
        req(4), [], [pool(auto=(0, 1), nodes=0, zones=3, total=False)], ROOMY,
        Fit.NO, 0, 3, {"gpu-pool": 3},
        ["raise the node pool gpu-pool's maximum from 3 to 4 nodes (per zone: from 1 to 2, "
         "in 3 zones)"],
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


# ---------------------------------------------------------------- reading the live inputs


@pytest.fixture
def world():
    """Two free 1-GPU L4 nodes in gpu-pool (autoscaling 0..2), the demo region's quota."""
    with FakeCluster(gpu_nodes=[{"name": "gpu-a"}, {"name": "gpu-b"}]) as fc, fake_gke() as gke:
        yield fc, gke


def _guard(world, replicas, *, quota=True, gke_pools=True):
    fc, gke = world
    pools = NodePools.from_settings(gke_settings(gke)) if gke_pools else None
    read = partial(gpu_quotas, gke_settings(gke)) if quota else None
    return require_capacity(connect(fc.kubeconfig_path), NS, req(replicas), pools, read)


def _region_reads(gke) -> int:
    return sum("/regions/" in r["path"] for r in gke.fake.requests)


def _set_max(gke, n: int) -> None:
    gke.fake.pools[(PROJECT, LOCATION, CLUSTER)]["gpu-pool"]["autoscaling"]["maxNodeCount"] = n


def test_replicas_on_free_gpus_pass_without_reading_the_quota(world):
    verdict = _guard(world, 2)
    assert verdict.fit is Fit.NOW and _region_reads(world[1]) == 0


def test_a_pool_at_its_maximum_is_refused_with_what_to_change(world):
    fc, gke = world
    fc.reset_counts()
    with pytest.raises(NotEnoughCapacity) as err:
        _guard(world, 3)
    said = str(err.value)
    assert "raise the node pool gpu-pool's maximum from 2 to 3 nodes" in said
    assert "choose fewer replicas (at most 2 fit)" in said
    assert err.value.verdict.at_most == 2
    assert admin_error_message(err.value) == said  # the page shows it as it is
    assert not [k for k in fc.request_counts if k[0] in ("create", "patch", "delete")]


def test_the_quota_stops_the_growth_the_maximum_allows(world):
    _, gke = world
    _set_max(gke, 4)
    gke.fake.add_region(PROJECT, LOCATION, {"PREEMPTIBLE_NVIDIA_L4_GPUS": (2, 2)})
    with pytest.raises(NotEnoughCapacity, match=re.escape(
        "ask for GPU quota: PREEMPTIBLE_NVIDIA_L4_GPUS in us-central1 is 2, 2 used "
        "(1 more needed); or choose fewer replicas (at most 2 fit)"
    )):  # fmt: skip
        _guard(world, 3)
    assert _region_reads(gke) == 1


def test_growth_within_maximum_and_quota_passes(world):
    _, gke = world
    _set_max(gke, 4)
    verdict = _guard(world, 4)
    assert verdict.fit is Fit.AFTER_GROWTH and verdict.growth == {"gpu-pool": 2}
    assert verdict.quota_checked and "quota" not in verdict.message


@pytest.mark.parametrize(
    ("fault", "said"),
    [("deny_quota", "needs compute.regions.get"), ("garbage", "is not JSON"),
     ("no_reader", "The GPU quota was not checked.")],
)  # fmt: skip
def test_an_unreadable_quota_is_said_and_never_blocks(world, fault, said):
    _, gke = world
    _set_max(gke, 4)
    gke.fake.add_region(PROJECT, LOCATION, {"PREEMPTIBLE_NVIDIA_L4_GPUS": (2, 2)})
    if fault == "deny_quota":
        gke.fake.deny_quota = True
    elif fault == "garbage":
        gke.fake.garbage_region = "<html>oops</html>"
    verdict = _guard(world, 3, quota=fault != "no_reader")
    assert verdict.fit is Fit.AFTER_GROWTH and not verdict.quota_checked
    assert "The GPU quota was not checked" in verdict.message and said in verdict.message


@pytest.mark.parametrize("gke_pools", [True, False])
def test_unreadable_node_pools_make_the_check_partial(world, gke_pools):
    _, gke = world
    gke.fake.deny = True  # GKE and Compute both refuse
    verdict = _guard(world, 3, gke_pools=gke_pools)
    assert verdict.fit is Fit.UNCHECKED and not verdict.blocks
    assert "node pools could not be read" in verdict.message


def test_the_quota_reader_comes_from_the_gke_settings(world):
    _, gke = world
    assert quota_reader(Settings(gke_project="p", gke_location="", gke_cluster="c")) is None
    read = quota_reader(gke_settings(gke))
    assert read is not None and read().quotas["NVIDIA_L4_GPUS"].limit == 8
