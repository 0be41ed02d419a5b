"""The fleet table's rows (``webapp.admin.fleet``): pure row building table-driven, and
``read_fleet`` against the fake API with fake vLLM servers behind the pod proxy."""

from __future__ import annotations

import pytest

from tests.fakes.k8s_server import FakeCluster
from tests.fakes.openai_server import FakeOpenAI
from tests.support.fleet import seed_fleet
from tests.support.vllm_metrics_text import metrics_text
from webapp.admin.fleet import MISSING, PoolLive, cell, fleet_row, pool_live, read_fleet
from webapp.cluster.errors import FleetNotInstalled
from webapp.cluster.fleet_objects import Autoscaling, PoolState
from webapp.cluster.k8s import connect
from webapp.cluster.pod_metrics import PodMetrics
from webapp.cluster.pools import Backend, pool_labels


def gauges(waiting: float, kv: float, ttfts=()) -> str:
    return metrics_text(ttfts=ttfts) + (
        f'vllm:num_requests_waiting{{model_name="m"}} {waiting}\n'
        f'vllm:kv_cache_usage_perc{{model_name="m"}} {kv}\n'
    )


LIVE = [
    ("two replicas: waiting summed, fullest KV cache",
     [PodMetrics("a", gauges(2, 0.25)), PodMetrics("b", gauges(3, 0.5))], (5.0, 0.5, ())),
    ("one replica does not answer: the other's numbers, it is named",
     [PodMetrics("a", gauges(2, 0.25)), PodMetrics("b", None, "HTTP 503")],
     (2.0, 0.25, ("b: HTTP 503",))),
    ("garbage counts as not answering",
     [PodMetrics("a", "<html>oops</html>")], (None, None, ("a: the metrics text has no "
                                                           "vllm:num_requests_* gauges",))),
    ("no ready replica", [], (None, None, ())),
]  # fmt: skip


@pytest.mark.parametrize(("case", "pods", "want"), LIVE, ids=[c[0] for c in LIVE])
def test_pool_live(case, pods, want):
    live = pool_live(pods)
    assert (live.waiting, live.kv_cache, live.unread) == want


def test_ttft_p95_is_one_histogram_over_the_replicas():
    fast = PodMetrics("a", gauges(0, 0.1, ttfts=[0.01] * 19))
    slow = PodMetrics("b", gauges(0, 0.1, ttfts=[5.0]))
    one = pool_live([fast]).ttft_p95_s
    both = pool_live([fast, slow]).ttft_p95_s
    assert one is not None and both is not None and both > one


STATE = PoolState("vllm-b", "mistral-7b", "nvidia-l4", 1, 2, 1, None, (Backend("vllm-b", 100),))
ROWS = [
    ("alone on its model", STATE, ("100%", "off")),
    ("a canary beside it", PoolState(**{**STATE.__dict__, "backends": (
        Backend("vllm-b", 95), Backend("vllm-c", 5))}), ("95% (vllm-c 5%)", "off")),
    ("autoscaling to zero", PoolState(**{**STATE.__dict__,
        "autoscaling": Autoscaling(1, 4, 4.0, True)}), ("100%", "0–4 (target 4 waiting)")),
    ("no route rule", PoolState(**{**STATE.__dict__, "backends": ()}), ("0% (no route)", "off")),
]  # fmt: skip


@pytest.mark.parametrize(("case", "state", "want"), ROWS, ids=[c[0] for c in ROWS])
def test_fleet_row(case, state, want):
    row = fleet_row(state, [])
    assert (row.share, row.autoscaling) == want
    assert (row.ready, row.replicas, row.live) == (1, 2, PoolLive())


@pytest.mark.parametrize(("value", "fmt", "shown"), [(None, ".0f", MISSING), (2.0, ".0f", "2"),
                                                     (0.256, ".0%", "26%")])  # fmt: skip
def test_cell(value, fmt, shown):
    assert cell(value, fmt) == shown


def test_read_fleet_against_the_fake_cluster():
    with FakeCluster(gpu_nodes=[{"name": "gpu-a"}]) as fake, FakeOpenAI("llama-2-7b") as vllm:
        seed_fleet(fake, "vllm")
        vllm.configure(metrics_override={"vllm:num_requests_waiting": 3.0})
        fake.proxy_pod_to("vllm", vllm.url, labels=pool_labels("vllm"))
        (row,) = read_fleet(connect(fake.kubeconfig_path), "vllm").rows
        assert (row.pool, row.model, row.gpu_type, row.ready, row.replicas) == (
            "vllm", "llama-2-7b", "nvidia-l4", 1, 1)  # fmt: skip
        assert row.live.waiting == 3.0 and row.live.unread == ()
        fake.proxy_pod_to("vllm", "http://127.0.0.1:9", labels=pool_labels("vllm"))  # gone
        (row,) = read_fleet(connect(fake.kubeconfig_path), "vllm", timeout=1.0).rows
        assert row.live.waiting is None and len(row.live.unread) == 1


def test_read_fleet_without_the_gateway_says_so():
    with FakeCluster(gpu_nodes=[{"name": "gpu-a"}]) as fake:
        fleet = read_fleet(connect(fake.kubeconfig_path), "vllm")
    assert fleet.rows == () and isinstance(fleet.error, FleetNotInstalled)
