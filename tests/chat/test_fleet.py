"""The chat's view of the model pools: a model's condition from its pools' replicas, and
the process-wide cache in front of a fleet (shared reads, bounded waits, one wake)."""

from __future__ import annotations

import sys
import threading
from types import SimpleNamespace

import pytest

from webapp.chat.errors import FleetUnavailable
from webapp.chat.fleet import CachedFleet, ClusterFleet, _plain, pool_condition
from webapp.cluster.errors import (
    ApiRejected,
    ClusterNotConfigured,
    ClusterUnavailable,
    Forbidden,
    NotFound,
)


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
    ],
)
def test_cluster_errors_in_plain_words(error, said):
    reason = _plain(error).reason
    assert said in reason
    assert "token" not in reason and "422" not in reason  # no API detail reaches a user


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


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
    assert err.value.reason in (
        "the chat has no access to the cluster",
        "this version cannot read model pools",
    )


class StandIn:
    """Until ``webapp.cluster.fleet`` is merged: a module with its planned functions
    (``served_models``, ``list_pools`` -> PoolState with model/replicas/ready,
    ``wake_pool``), recording calls. Replace by the real module against the fake API."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []
        self.fail: Exception | None = None
        self.pools = [
            SimpleNamespace(name="vllm", model="llama-2-7b", replicas=1, ready=1),
            SimpleNamespace(name="mistral", model="mistral-7b", replicas=0, ready=0),
            SimpleNamespace(name="mistral-canary", model="mistral-7b", replicas=0, ready=0),
        ]

    def _record(self, *call):
        self.calls.append(call)
        if self.fail:
            raise self.fail

    def served_models(self, cluster, ns):
        self._record("served_models", cluster, ns)
        return ["llama-2-7b", "mistral-7b"]

    def list_pools(self, cluster, ns):
        self._record("list_pools", cluster, ns)
        return self.pools

    def wake_pool(self, cluster, ns, model):
        self._record("wake_pool", cluster, ns, model)
        return "mistral"


@pytest.fixture
def stand_in(monkeypatch):
    from webapp.cluster import k8s

    module = StandIn()
    monkeypatch.setitem(sys.modules, "webapp.cluster.fleet", module)
    connects = []
    monkeypatch.setattr(k8s, "connect", lambda kubeconfig=None: connects.append(kubeconfig) or "C")
    module.connects = connects
    return module


def test_the_cluster_fleet_calls_the_cluster_functions(stand_in):
    fleet = ClusterFleet("", "llm")
    assert fleet.models() == ["llama-2-7b", "mistral-7b"]
    assert fleet.state("llama-2-7b") == "serving"
    assert fleet.state("mistral-7b") == "asleep"
    assert fleet.state("gone") == "unknown"
    fleet.wake("mistral-7b")
    assert stand_in.calls[-1] == ("wake_pool", "C", "llm", "mistral-7b")
    assert {c[1:3] for c in stand_in.calls} == {("C", "llm")}
    assert stand_in.connects == [None]  # one connection, in-cluster or ~/.kube/config
    stand_in.pools[1].replicas = 1
    assert fleet.state("mistral-7b") == "loading"


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (Forbidden("scale", operation="patch_namespaced_deployment_scale"), "not allowed"),
        (ClusterUnavailable("connection refused"), "cannot be reached"),
    ],
)
def test_the_cluster_fleets_errors_are_plain(stand_in, error, reason):
    stand_in.fail = error
    fleet = ClusterFleet("/etc/kube.conf", "llm")
    for call in (fleet.models, lambda: fleet.state("m"), lambda: fleet.wake("m")):
        with pytest.raises(FleetUnavailable, match=reason):
            call()
    assert stand_in.connects == ["/etc/kube.conf"]


def test_wake_pool_is_found_beside_the_fleet_module(stand_in, monkeypatch):
    scaling = SimpleNamespace(wake_pool=stand_in.wake_pool)
    monkeypatch.delattr(StandIn, "wake_pool")
    fleet = ClusterFleet("", "llm")
    with pytest.raises(FleetUnavailable, match="cannot read model pools"):
        fleet.wake("mistral-7b")
    monkeypatch.setitem(sys.modules, "webapp.cluster.fleet_scaling", scaling)
    fleet.wake("mistral-7b")
    assert stand_in.calls[-1] == ("wake_pool", "C", "llm", "mistral-7b")
