"""Can the GPU pool ever schedule a model's pod? Pure decisions, table-driven."""

from __future__ import annotations

import pytest

from webapp.cluster.inventory import GpuNode, PodInfo
from webapp.cluster.node_pools import NodePoolInfo
from webapp.cluster.scheduling import check_placement, freed_by_in_place

L4, T4 = "nvidia-l4", "nvidia-tesla-t4"


def node(name="gpu-a", *, pool="gpu-pool", acc=L4, gpus=1, used=0, ready=True) -> GpuNode:
    return GpuNode(name, pool, acc, True, ready, gpus, gpus, used)


def pool(name="gpu-pool", *, acc=L4, count=1, auto=(0, 2), nodes=None, zones=1, total=False):
    return NodePoolInfo(
        name=name, machine_type="g2-standard-8", accelerator_type=acc, accelerator_count=count,
        initial_node_count=1, autoscaling_enabled=auto is not None,
        min_nodes=(auto or (0, 0))[0], max_nodes=(auto or (0, 0))[1], spot=True,
        status="RUNNING", node_count=nodes, zones=zones, total_limits=total,
    )  # fmt: skip


FULL = [node("gpu-a", used=1), node("gpu-b", used=1)]  # two 1-GPU nodes, both busy
CPU_POOL = NodePoolInfo("default-pool", "e2-standard-4", None, 0, 3, False, 0, 0, False, "RUNNING")


@pytest.mark.parametrize(
    ("gpus", "gpu", "nodes", "pools", "freed", "ok", "words"),
    [
        # the case: a 2-GPU model on a pool of 1-GPU nodes, whatever is free
        (2, L4, [node()], [pool()], {}, False, "Nodes of gpu-pool have 1 × L4"),
        (2, L4, [], [pool(auto=(0, 9))], {}, False, "create a pool with 2 GPUs per node"),
        # GPU type nobody has
        (1, T4, FULL, [CPU_POOL, pool()], {}, False, "no node pool with T4 GPUs"),
        # room now, room after in place frees the old pod, room when the pool grows
        (1, L4, [node(used=1), node("gpu-b")], [pool(auto=(0, 2))], {}, True, ""),
        (1, L4, FULL, [pool(auto=(0, 2))], {"gpu-a": 1}, True, ""),
        (1, L4, FULL, [pool(auto=(0, 3))], {}, True, ""),
        (1, L4, [], [pool(auto=(0, 2), nodes=0)], {}, True, ""),  # scaled to zero, may grow
        (2, L4, [node(gpus=2, used=2)], [pool(count=2, auto=(1, 1))], {"gpu-a": 2}, True, ""),
        # full and cannot grow
        (1, L4, FULL, [pool(auto=(0, 2))], {}, False, "gpu-pool is at its maximum of 2 node(s)"),
        (1, L4, FULL, [pool(auto=None)], {}, False, "gpu-pool has no autoscaling (2 node(s))"),
        (1, L4, [node(used=1), node("gpu-b", ready=False)], [pool(auto=(0, 2))], {}, False,
         "at its maximum"),  # a NotReady node takes nothing
        # the old model ran on a T4: stopping it frees nothing for an L4 model
        (1, L4, [*FULL, node("t4-a", pool="t4-pool", acc=T4, used=1)],
         [pool(auto=(0, 2)), pool("t4-pool", acc=T4, auto=(0, 1))], {"t4-a": 1}, False,
         "even once the running model stops"),
        # a pool with bigger nodes that can grow is enough
        (2, L4, FULL, [pool(auto=(0, 2)), pool("gpu-pool-2x", count=2, auto=(0, 1), nodes=0)],
         {}, True, ""),
        # regional pools: per-zone maximum x zones, or total limits
        (1, L4, FULL, [pool(auto=(0, 1), zones=3)], {}, True, ""),
        (1, L4, FULL, [pool(auto=(0, 2), zones=3, total=True)], {}, False, "maximum of 2 node"),
        # GKE not readable: only the running nodes decide, and the answer says so
        (1, T4, FULL, None, {}, True, "Partial check"),
        (2, L4, FULL, None, {}, False, "Partial check"),
        (1, L4, FULL, None, {}, True, "Partial check"),
        (1, L4, [node()], None, {}, True, "Partial check"),
    ],
)  # fmt: skip
def test_check_placement(gpus, gpu, nodes, pools, freed, ok, words):
    got = check_placement(
        model="big-model", gpus=gpus, gpu_type=gpu, nodes=nodes, pools=pools, freed=freed
    )
    assert got.ok is ok, got.reason
    assert words in got.reason
    assert got.partial is (pools is None)
    if not ok:
        assert "big-model" in got.reason or "Nodes of" in got.reason


def test_refusal_says_what_to_change():
    got = check_placement(
        model="llama-70b", gpus=2, gpu_type=L4, nodes=[node()], pools=[CPU_POOL, pool()]
    )
    assert got.reason == (
        "Nodes of gpu-pool have 1 × L4; llama-70b needs 2 on one node. Choose 1 GPU(s) with a "
        "quantized or smaller variant, or create a pool with 2 GPUs per node (g2-standard-24)."
    )
    other = check_placement(model="m", gpus=1, gpu_type=T4, nodes=[node()], pools=[pool()])
    assert other.reason == (
        "The cluster has no node pool with T4 GPUs, so m can never be scheduled. Choose a GPU "
        "type it has (L4), or create a node pool with T4 GPUs."
    )


def _pod(name, node_, gpus, model="llama-2-7b", phase="Running"):
    return PodInfo(name=name, namespace="vllm", phase=phase, ready=True, restarts=0,
                   node=node_, age_s=1, reason="", message="", model=model, ip="", gpus=gpus)  # fmt: skip


@pytest.mark.parametrize(
    ("pods", "freed"),
    [
        ([], {}),
        ([_pod("vllm-1", "gpu-a", 1)], {"gpu-a": 1}),
        ([_pod("vllm-1", "gpu-a", 2), _pod("vllm-2", "gpu-a", 1)], {"gpu-a": 3}),
        ([_pod("worker", "gpu-a", 1, model="")], {}),  # not a vLLM pod of the console
        ([_pod("vllm-1", "", 1)], {}),  # pending: holds no node's GPUs
        ([_pod("vllm-1", "gpu-a", 1, phase="Failed")], {}),
    ],
)
def test_freed_by_in_place(pods, freed):
    assert freed_by_in_place(pods) == freed
