"""The chat's view of the model pools: a model's condition from its pools' replicas, and
the process-wide cache in front of a fleet (shared reads, bounded waits, one wake)."""

from __future__ import annotations

import threading

import pytest

from tests.fakes.k8s_server import FakeCluster
from tests.support.clock import Clock
from tests.support.fleet import CATALOG, seed_fleet
from webapp.chat.errors import FleetUnavailable
from webapp.chat.fleet import CachedFleet, ClusterFleet, _plain, pool_condition
from webapp.cluster import fleet, fleet_scaling, k8s
from webapp.cluster.errors import (
    ApiRejected,
    ClusterNotConfigured,
    ClusterUnavailable,
    FleetNotInstalled,
    Forbidden,
    ModelNotRouted,
    NotFound,
    PoolNotFound,
)
from webapp.cluster.k8s import connect
from webapp.cluster.pools import Backend, PoolSpec


@pytest.mark.parametrize(
    ("pools", "condition"),
    [
        ([], "unknown"),
        ([(0, 0)], "asleep"),
        ([(0, 0), (0, 0)], "asleep"),
        ([(1, 0)], "loading"),
        ([(0, 0), (2, 0)], "loading"),
        ([(1, 1)], "serving"),
        ([(0, 0), (3, 1)], "serving"),  # a canary pool asleep, the stable one serving
        ([(0, 1)], "serving"),  # scaled down, its last replica still answering
    ],
)
def test_a_models_condition_from_its_pools(pools, condition):
    assert pool_condition(pools) == condition


@pytest.mark.parametrize(
    ("error", "said"),
    [
        (ClusterNotConfigured("no kubeconfig"), "the chat has no access to the cluster"),
        (Forbidden("scale", operation="patch_namespaced_deployment_scale"), "not allowed"),
        (ClusterUnavailable("timeout"), "cannot be reached"),
        (NotFound("read", "deployments/x"), "its model pool was not found"),
        (ApiRejected("patch", "422 spec.replicas: token=abc"), "the cluster refused"),
        (PoolNotFound("vllm-mistral"), "its model pool was not found"),
        (ModelNotRouted("falcon-7b"), "no model pool serves this model any more"),
        (FleetNotInstalled("the HTTPRoute 'llm-models'"), "model pools are not set up"),
    ],
)
def test_cluster_errors_in_plain_words(error, said):
    reason = _plain(error).reason
    assert said in reason
    assert "token" not in reason and "422" not in reason  # no API detail reaches a user


class Pools:
    """A fleet whose answers the test sets; counts calls; ``gate`` holds reads."""

    def __init__(self, served: dict[str, tuple[int, int]]) -> None:
        self.served = served
        self.reads = 0
        self.wakes: list[str] = []
        self.fail: Exception | None = None
        self.gate = threading.Event()
        self.gate.set()

    def models(self) -> list[str]:
        self.reads += 1
        self.gate.wait(5)
        if self.fail:
            raise self.fail
        return list(self.served)

    def state(self, model):
        self.reads += 1
        self.gate.wait(5)
        if self.fail:
            raise self.fail
        return pool_condition([self.served[model]] if model in self.served else [])

    def wake(self, model) -> None:
        if self.fail:
            raise self.fail
        self.wakes.append(model)
        self.served[model] = (1, 0)


@pytest.fixture
def clock():
    return Clock()


def cached(pools, clock, **kw) -> CachedFleet:
    return CachedFleet(pools, clock=clock, **kw)


def test_models_are_read_once_per_ttl(clock):
    pools = Pools({"a": (1, 1), "b": (0, 0)})
    fleet = cached(pools, clock, models_ttl_s=10)
    assert fleet.models() == ["a", "b"]
    assert fleet.models() == ["a", "b"]
    assert pools.reads == 1
    clock.now += 11
    pools.served["c"] = (1, 1)
    assert fleet.models() == ["a", "b"]  # stale: at once, read anew in the background
    assert eventually(fleet.models, ["a", "b", "c"])
    assert pools.reads == 2


def eventually(read, expected, tries=200):
    for _ in range(tries):
        if read() == expected:
            return True
        threading.Event().wait(0.01)
    return False


def test_an_unreadable_fleet_gives_none_and_is_not_asked_every_run(clock):
    pools = Pools({"a": (1, 1)})
    pools.fail = FleetUnavailable("the cluster cannot be reached right now")
    fleet = cached(pools, clock)
    assert fleet.models() is None and fleet.models() is None
    assert fleet.state("a") == "unknown"
    assert pools.reads == 2  # one models read, one state read


def test_a_bug_below_is_no_traceback_on_the_page(clock):
    pools = Pools({"a": (1, 1)})
    pools.fail = AttributeError("'PoolState' object has no attribute 'replicas'")
    fleet = cached(pools, clock)
    assert fleet.models() is None
    assert fleet.state("a") == "unknown"
    with pytest.raises(FleetUnavailable, match="could not be woken"):
        fleet.wake("a")


def test_a_slow_fleet_never_holds_the_page_past_the_wait(clock):
    pools = Pools({"a": (1, 1)})
    fleet = cached(pools, clock, wait_s=0.05)
    pools.gate.clear()  # the API server hangs
    assert fleet.models() is None  # nothing known yet: as without discovery
    assert fleet.models() is None and pools.reads == 1  # one read in flight, shared
    pools.gate.set()
    assert eventually(fleet.models, ["a"]) and pools.reads == 1
    clock.now += 11
    pools.gate.clear()
    assert fleet.models() == ["a"]  # stale while the next read hangs: the last answer
    assert eventually(lambda: pools.reads, 2)  # the one read in flight
    assert fleet.models() == ["a"] and pools.reads == 2
    pools.gate.set()


def test_a_model_is_woken_once_per_process(clock):
    pools = Pools({"a": (0, 0)})
    fleet = cached(pools, clock)
    assert fleet.state("a") == "asleep"
    assert fleet.wake("a") is True
    assert fleet.wake("a") is False  # another session, another rerun: not again
    assert pools.wakes == ["a"]
    assert fleet.state("a") == "loading"  # read anew after the wake
    clock.now += 301
    assert fleet.wake("a") is True  # the guard ran out (the pool never came up)
    assert pools.wakes == ["a", "a"]


def test_a_model_seen_serving_may_be_woken_again_after_it_sleeps(clock):
    pools = Pools({"a": (0, 0)})
    fleet = cached(pools, clock, state_ttl_s=0)
    fleet.wake("a")
    pools.served["a"] = (1, 1)
    assert fleet.state("a") == "serving"
    pools.served["a"] = (0, 0)  # scaled to zero again
    assert eventually(lambda: fleet.state("a"), "asleep")
    assert fleet.wake("a") is True
    assert pools.wakes == ["a", "a"]


def test_a_refused_wake_is_not_remembered(clock):
    pools = Pools({"a": (0, 0)})
    fleet = cached(pools, clock)
    pools.fail = FleetUnavailable("the chat is not allowed to wake models")
    with pytest.raises(FleetUnavailable, match="not allowed"):
        fleet.wake("a")
    pools.fail = None
    assert fleet.wake("a") is True and pools.wakes == ["a"]


def test_concurrent_sessions_wake_once(clock):
    pools = Pools({"a": (0, 0)})
    fleet = cached(pools, clock)
    woke = []
    threads = [threading.Thread(target=lambda: woke.append(fleet.wake("a"))) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert pools.wakes == ["a"] and sorted(woke) == [False] * 7 + [True]


def test_the_cluster_fleet_without_a_cluster_is_unavailable_in_plain_words(tmp_path):
    fleet = CachedFleet(ClusterFleet(str(tmp_path / "no-kubeconfig"), "vllm"))
    assert fleet.models() is None
    assert fleet.state("a") == "unknown"
    with pytest.raises(FleetUnavailable) as err:
        fleet.wake("a")
    assert err.value.reason == "the chat has no access to the cluster"


NS = "vllm"
REPO = {"max_model_len": 8192, "catalog_ids": CATALOG}


@pytest.fixture
def pools():
    """The fake API seeded as we ship it (pool "vllm" serving llama-2-7b) plus two pools,
    "mistral" and "qwen"; slow enough to load that a woken pool is seen loading."""
    with FakeCluster(gpu_nodes=[{"name": f"gpu-{n}"} for n in "abc"], ready_delay=1.0) as fake:
        seed_fleet(fake, NS)
        admin = connect(fake.kubeconfig_path)
        fleet.create_pool(admin, NS, PoolSpec("mistral", "mistral-7b"),
                          hf_repo="mistralai/Mistral-7B-v0.1", **REPO)  # fmt: skip
        fleet.create_pool(admin, NS, PoolSpec("qwen", "qwen2-7b"),
                          hf_repo="Qwen/Qwen2-7B-Instruct", **REPO)  # fmt: skip
        assert fake.wait_for(lambda f: len(f.served_models(NS)) == 3, 10)
        yield fake, admin


def test_the_cluster_fleet_reads_and_wakes_the_real_pools(pools):
    fake, admin = pools
    chat = ClusterFleet(fake.kubeconfig_path, NS)
    assert chat.models() == ["llama-2-7b", "mistral-7b", "qwen2-7b"]
    assert chat.state("mistral-7b") == "serving"
    assert chat.state("falcon-7b") == "unknown"  # no rule routes it
    fleet_scaling.scale_pool(admin, NS, "mistral", 0)
    assert fake.wait_for(lambda f: "mistral-7b" not in f.served_models(NS), 5)
    assert chat.state("mistral-7b") == "asleep"
    fake.reset_counts()
    chat.wake("mistral-7b")
    assert fake.get("deployments", "mistral", NS)["spec"]["replicas"] == 1
    assert chat.state("mistral-7b") == "loading"  # its replica loads the weights
    assert fake.wait_for(lambda f: "mistral-7b" in f.served_models(NS), 10)
    assert eventually(lambda: chat.state("mistral-7b"), "serving")
    assert {r.verb for r in fake.requests} == {"get", "patch"}  # no list, no other write


def test_a_canary_pool_asleep_beside_a_serving_one_is_serving(pools):
    fake, admin = pools
    chat = ClusterFleet(fake.kubeconfig_path, NS)
    fleet_scaling.scale_pool(admin, NS, "qwen", 0)  # its GPU for the canary
    fleet.create_pool(admin, NS, PoolSpec("mistral-canary", "mistral-7b"), canary=True,
                      hf_repo="mistralai/Mistral-7B-v0.1", **REPO)  # fmt: skip
    assert fleet_scaling.model_replicas(admin, NS, "mistral-7b") == [(1, 1)]  # no share yet
    split = [Backend("mistral", 95), Backend("mistral-canary", 5)]
    fleet.set_split(admin, NS, "mistral-7b", split)
    fleet_scaling.scale_pool(admin, NS, "mistral-canary", 0)
    assert eventually(lambda: fleet_scaling.model_replicas(admin, NS, "mistral-7b"),
                      [(1, 1), (0, 0)])  # fmt: skip
    assert chat.state("mistral-7b") == "serving"
    fleet_scaling.scale_pool(admin, NS, "mistral", 0)
    assert eventually(lambda: chat.state("mistral-7b"), "asleep")


def test_the_cluster_fleets_errors_are_plain(pools):
    fake, _ = pools
    chat = ClusterFleet(fake.kubeconfig_path, NS)
    with pytest.raises(FleetUnavailable, match="no model pool serves this model"):
        chat.wake("falcon-7b")
    fake.forbid("get", "deployments")
    with pytest.raises(FleetUnavailable, match="not allowed"):
        chat.state("qwen2-7b")
    fake.forbid("get", "httproutes")
    for call in (chat.models, lambda: chat.wake("qwen2-7b")):
        with pytest.raises(FleetUnavailable, match="not allowed") as err:
            call()
        assert "llm-models" not in err.value.reason  # no API detail reaches a user


def test_without_the_gateway_the_cluster_fleet_says_pools_are_not_set_up():
    with FakeCluster(gpu_nodes=[{"name": "gpu-a"}]) as fake:
        chat = ClusterFleet(fake.kubeconfig_path, NS)
        for call in (chat.models, lambda: chat.state("m"), lambda: chat.wake("m")):
            with pytest.raises(FleetUnavailable, match="model pools are not set up"):
                call()


def test_the_cluster_fleet_connects_once(pools, monkeypatch):
    fake, _ = pools
    made = []
    monkeypatch.setattr(k8s, "connect", lambda path=None: made.append(path) or connect(path))
    chat = ClusterFleet(fake.kubeconfig_path, NS)
    chat.models(), chat.state("qwen2-7b"), chat.wake("qwen2-7b")
    assert made == [fake.kubeconfig_path]
