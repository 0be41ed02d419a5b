"""The admin page's reads (``webapp.admin.status``), against the fake Kubernetes and GKE
API servers where they read a cluster."""

from __future__ import annotations

import threading

import pytest

from tests.fakes.k8s_server import ApiError, FakeCluster
from tests.support.admin_world import fake_gke, gke_settings
from tests.support.cluster import NS, seed_vllm
from webapp.admin.plan import strategy_options
from webapp.admin.status import log_pod, pod_log, read_pools, read_status, sample_load
from webapp.cluster.errors import NotFound
from webapp.cluster.inventory import PodInfo
from webapp.cluster.k8s import connect
from webapp.cluster.node_pools import NodePools
from webapp.llm.errors import LLMError
from webapp.llm.metrics import MetricsHistory


def _pod(name, model="", age_s=60.0):
    return PodInfo(name=name, namespace=NS, phase="Running", ready=True, restarts=0, node="n",
                   age_s=age_s, reason="", message="", model=model, ip="")  # fmt: skip


@pytest.mark.parametrize(
    ("pods", "expected"),
    [
        ([], None),
        ([_pod("a"), _pod("b")], "a"),  # no vLLM pod: the first
        ([_pod("worker", age_s=1), _pod("vllm-old", "llama-2-7b")], "vllm-old"),
        # a switch: the new pod is the newest serving pod, wherever the API lists it
        ([_pod("vllm-old", "llama-2-7b", 600), _pod("vllm-new", "mistral-7b", 5)], "vllm-new"),
        ([_pod("vllm-new", "mistral-7b", 5), _pod("vllm-old", "llama-2-7b", 600)], "vllm-new"),
    ],
)
def test_log_pod_is_the_newest_serving_pod(pods, expected):
    assert log_pod(pods) == expected


@pytest.fixture
def fake():
    with FakeCluster(gpu_nodes=[{"name": "gpu-a"}, {"name": "gpu-b"}]) as fc:
        seed_vllm(fc)
        yield fc


@pytest.fixture
def gke():
    with fake_gke() as server:
        yield server


def _pools(gke):
    return NodePools.from_settings(gke_settings(gke), poll_interval_s=0.01)


def test_strategy_options_and_status(fake):
    cluster = connect(fake.kubeconfig_path)
    st = read_status(cluster, NS, None)
    assert st.cluster_error is None and st.pools is None
    assert [n.name for n in st.inventory.nodes] == ["gpu-a", "gpu-b"]
    in_place, bg = strategy_options(
        st.inventory, None, gpus_needed=1, gpu_type="nvidia-l4", pool="gpu-pool"
    )
    assert in_place.allowed and bg.allowed
    in_place2, bg2 = strategy_options(
        st.inventory, None, gpus_needed=2, gpu_type="nvidia-l4", pool="gpu-pool", model="big"
    )
    assert not bg2.allowed and not in_place2.allowed  # 1-GPU nodes: neither can work
    assert in_place2.reason == bg2.reason
    assert "Nodes of gpu-pool have 1 × L4; big needs 2 on one node" in bg2.reason
    assert "Partial check" in bg2.reason  # no GKE: only the running nodes were seen


def test_gpus_held_in_other_namespaces_are_not_seen(fake, gke):
    """Least privilege: the console lists pods of its own namespace only, so a GPU held by
    another namespace's pod looks free (the scheduler would keep a second vLLM pod Pending,
    and a switch whose pod stays unschedulable rolls back)."""
    fake.add_pod("batch-job", node="gpu-b", namespace="jobs", gpus=1)
    st = read_status(connect(fake.kubeconfig_path), NS, _pools(gke))
    assert {n.name: n.gpu_requested for n in st.inventory.nodes} == {"gpu-a": 1, "gpu-b": 0}
    _, bg = strategy_options(
        st.inventory, st.pools, gpus_needed=1, gpu_type="nvidia-l4", pool="gpu-pool"
    )
    assert bg.allowed


def test_pod_log_reads_the_tail_and_says_when_the_pod_is_gone(fake):
    cluster = connect(fake.kubeconfig_path)
    pod = log_pod(read_status(cluster, NS, None).inventory.pods)
    fake.pod_logs[(NS, pod)].extend(f"line {i}" for i in range(80))
    assert pod_log(cluster, NS, pod) == [f"line {i}" for i in range(30, 80)]
    with pytest.raises(NotFound):
        pod_log(cluster, NS, "vllm-gone")


def test_sample_load_keeps_the_history_when_metrics_cannot_be_read():
    history = MetricsHistory()
    problem = sample_load(history, "http://127.0.0.1:9", None)  # nothing listens there
    assert isinstance(problem, LLMError) and history.latest() is None


def _together(handle, barrier: threading.Barrier, apart: list[str]):
    """``handle`` answering each list only once ``barrier`` opens (its other parties are the
    other lists); a list made after the others had to be answered is noted in ``apart``."""

    def wrapped(method, path, *args):
        if method == "GET" and not path.rstrip("/").endswith(("log", "version")):
            try:
                barrier.wait(timeout=10)
            except threading.BrokenBarrierError:
                apart.append(path)
        return handle(method, path, *args)

    return wrapped


def test_the_status_reads_are_made_at_once(fake, gke):
    """The three Kubernetes lists and the GKE list are in flight together (the page waits for
    the slowest, not the sum): each list waits at a barrier of four before it is answered,
    which only opens when all four are there."""
    barrier, apart = threading.Barrier(4), []
    fake.handle = _together(fake.handle, barrier, apart)
    gke.fake.handle = _together(gke.fake.handle, barrier, apart)
    st = read_status(connect(fake.kubeconfig_path), NS, _pools(gke))
    assert not apart, f"made one after another: {apart}"
    assert st.cluster_error is None and st.pools_error is None
    assert [n.name for n in st.inventory.nodes] == ["gpu-a", "gpu-b"]
    assert {p.name: p.node_count for p in st.pools}["gpu-pool"] == 2


def test_the_node_pools_alone_are_read_with_one_list_of_nodes(fake, gke):
    """The node pools tab: the GKE list and one list of nodes (no pods, no events), at once
    (a barrier of two); the pools' node counts are the live ones from Kubernetes."""
    barrier, apart = threading.Barrier(2), []
    cluster, pools = connect(fake.kubeconfig_path), _pools(gke)
    fake.reset_counts()
    fake.handle = _together(fake.handle, barrier, apart)
    gke.fake.handle = _together(gke.fake.handle, barrier, apart)
    st = read_pools(cluster, pools)
    assert not apart, f"made one after another: {apart}"
    assert dict(fake.request_counts) == {("list", "nodes"): 1}
    assert st.inventory is None and st.pools_error is None
    assert {p.name: p.node_count for p in st.pools}["gpu-pool"] == 2  # GKE does not say


@pytest.mark.parametrize(
    ("cluster_ok", "gke_ok", "expected"),
    [
        (True, False, "nothing read"),  # GKE not configured: no table, so no cluster read
        (False, True, "GKE's counts"),  # the nodes unreadable: the pools as GKE says
    ],
)
def test_the_node_pools_read_when_a_part_is_missing(fake, gke, cluster_ok, gke_ok, expected):
    cluster = connect(fake.kubeconfig_path)
    if not cluster_ok:  # a cluster that refuses every request
        fake.handle = lambda *_: (_ for _ in ()).throw(ApiError(403, "forbidden"))
    fake.reset_counts()
    st = read_pools(cluster, _pools(gke) if gke_ok else None)
    if expected == "nothing read":
        assert st.pools is None and st.pools_error is None
        assert not fake.request_counts
    else:
        assert st.pools_error is None
        assert st.pools == tuple(_pools(gke).list_node_pools())
