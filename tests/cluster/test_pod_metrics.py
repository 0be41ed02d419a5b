"""A pool's /metrics through the API server's pod proxy (webapp/cluster/pod_metrics.py),
against the fake API server and fake vLLM servers behind its pod proxy: every ready replica
is read, a replica that does not answer is marked (and makes the whole pool unreadable for
``pool_metrics_text``), an RBAC refusal and a pool with no replica are typed errors."""

from __future__ import annotations

import socket
import time

import pytest

from tests.fakes.openai_server import FakeOpenAI
from tests.support.fleet import seed_fleet
from webapp.cluster import fleet
from webapp.cluster.errors import PodMetricsUnavailable
from webapp.cluster.fleet_scaling import scale_pool
from webapp.cluster.pod_metrics import (
    PodMetrics,
    pod_metrics_texts,
    pool_metrics_text,
    ready_pods,
)
from webapp.cluster.pools import PoolSpec, pool_labels
from webapp.llm.metrics import parse_metrics

NS = "vllm"


@pytest.fixture
def fleet_fake(fake):
    seed_fleet(fake, NS)
    return fake


@pytest.fixture
def servers():
    with FakeOpenAI("llama-2-7b") as one, FakeOpenAI("llama-2-7b") as two:
        yield one, two


def ready_count(fake, pool: str) -> int:
    """Ready pods of ``pool`` as the fake holds them (``wait_for`` holds its lock: no HTTP)."""
    return sum(1 for p in fake.list("pods", NS, "app.kubernetes.io/instance=" + pool)
               if p["status"].get("phase") == "Running"
               and any(c["type"] == "Ready" and c["status"] == "True"
                       for c in p["status"].get("conditions", [])))  # fmt: skip


def _two_replicas(fake, cluster) -> list[str]:
    scale_pool(cluster, NS, "vllm", 2)
    assert fake.wait_for(lambda f: ready_count(f, "vllm") == 2, 10)
    return ready_pods(cluster, NS, "vllm")


def test_every_ready_replica_is_read_through_its_own_proxy(fleet_fake, cluster, servers):
    one, two = servers
    one.configure(metrics_override={"vllm:num_requests_waiting": 3.0})
    two.configure(metrics_override={"vllm:num_requests_waiting": 4.0})
    first, second = _two_replicas(fleet_fake, cluster)
    fleet_fake.proxy_pod_to(NS, one.url, pod=first)
    fleet_fake.proxy_pod_to(NS, two.url, pod=second)
    texts = pod_metrics_texts(cluster, NS, "vllm")
    assert [t.pod for t in texts] == [first, second]
    assert [parse_metrics(t.text).num_requests_waiting for t in texts] == [3.0, 4.0]
    assert parse_metrics(pool_metrics_text(cluster, NS, "vllm")).num_requests_waiting == 7.0
    proxied = [r for r in fleet_fake.requests if r.resource == "pods/proxy"]
    assert {r.name for r in proxied} == {f"{first}:8000", f"{second}:8000"}
    assert {r.verb for r in proxied} == {"get"}


def test_a_replica_that_does_not_answer_is_marked_and_makes_the_pool_unreadable(
    fleet_fake, cluster, servers
):
    one, _ = servers
    first, second = _two_replicas(fleet_fake, cluster)
    fleet_fake.proxy_pod_to(NS, one.url, pod=first)  # the second has nothing behind it
    texts = pod_metrics_texts(cluster, NS, "vllm")
    assert texts[0].text and texts[0].problem is None
    assert texts[1] == PodMetrics(second, None, texts[1].problem)
    assert "503" in texts[1].problem
    with pytest.raises(PodMetricsUnavailable) as err:
        pool_metrics_text(cluster, NS, "vllm")
    assert (err.value.pool, err.value.pod) == ("vllm", second)


def test_labels_route_future_pods_of_a_new_pool(fleet_fake, cluster, servers):
    one, _ = servers
    fleet_fake.proxy_pod_to(NS, one.url, labels=pool_labels("qwen"))
    fleet.create_pool(cluster, NS, PoolSpec("qwen", "qwen2-7b"), hf_repo="Qwen/Qwen2-7B",
                      max_model_len=8192, catalog_ids=("llama-2-7b", "qwen2-7b"))  # fmt: skip
    assert fleet_fake.wait_for(lambda f: ready_count(f, "qwen") == 1, 10)
    (pod,) = pod_metrics_texts(cluster, NS, "qwen")
    assert pod.pod.startswith("qwen-") and pod.problem is None
    assert pod_metrics_texts(cluster, NS, "vllm")[0].problem  # the default pool's is not routed


def test_a_pool_with_no_ready_replica(fleet_fake, cluster):
    scale_pool(cluster, NS, "vllm", 0)
    assert fleet_fake.wait_for(lambda f: ready_count(f, "vllm") == 0, 10)
    assert pod_metrics_texts(cluster, NS, "vllm") == []
    with pytest.raises(PodMetricsUnavailable, match="no ready replica"):
        pool_metrics_text(cluster, NS, "vllm")


def test_a_refused_proxy_names_the_rbac_rule(fleet_fake, cluster, servers):
    fleet_fake.proxy_pod_to(NS, servers[0].url, labels=pool_labels("vllm"))
    fleet_fake.forbid("get", "pods/proxy")
    (pod,) = pod_metrics_texts(cluster, NS, "vllm")
    assert "get pods/proxy" in pod.problem
    fleet_fake.forbid("list", "pods")
    with pytest.raises(PodMetricsUnavailable, match="list pods"):
        pool_metrics_text(cluster, NS, "vllm")


def test_garbage_is_passed_on_as_text_for_the_parser_to_judge(fleet_fake, cluster, servers):
    one, _ = servers
    one.configure(metrics_text="<html>proxy error</html>")
    fleet_fake.proxy_pod_to(NS, one.url, labels=pool_labels("vllm"))
    (pod,) = pod_metrics_texts(cluster, NS, "vllm")
    assert pod.text == "<html>proxy error</html>"


def test_silent_replicas_are_read_in_parallel_one_timeout_for_all(fleet_fake, cluster):
    with socket.socket() as silent:  # accepts connections, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        _two_replicas(fleet_fake, cluster)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        fleet_fake.proxy_pod_to(NS, url, labels=pool_labels("vllm"))
        started = time.monotonic()
        texts = pod_metrics_texts(cluster, NS, "vllm", timeout=1.0)
        elapsed = time.monotonic() - started
    assert [t.problem for t in texts] == ["it did not answer within 1 s"] * 2
    assert elapsed < 1.9, elapsed
