"""The node-pool list shared by a process's admin page runs (``CachedNodePools``), through
the real google-cloud-container client against the fake GKE API, with a clock the test
moves."""

from __future__ import annotations

import time

import pytest

from tests.support.admin_world import fake_gke, gke_settings
from tests.support.clock import Clock
from webapp.cluster.errors import GkeForbidden
from webapp.cluster.node_pools_cache import CachedNodePools

TTL_S, MAX_STALE_S = 5.0, 60.0


@pytest.fixture
def gke():
    with fake_gke() as server:
        yield server


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def pools(gke, clock):
    return CachedNodePools.from_settings(
        gke_settings(gke), ttl_s=TTL_S, max_stale_s=MAX_STALE_S, clock=clock,
        poll_interval_s=0.0, sleep=lambda _s: None,
    )  # fmt: skip


def lists(gke) -> int:
    """The node-pool lists GKE answered so far."""
    return sum(
        1 for r in gke.fake.requests if r["method"] == "GET" and r["path"].endswith("/nodePools")
    )


def gpu_max(pools) -> int:
    (gpu,) = [p for p in pools.list_node_pools() if p.name == "gpu-pool"]
    return gpu.max_nodes


def settle(gke, count: int) -> None:
    """Wait until GKE has answered ``count`` lists (a read made aside)."""
    deadline = time.monotonic() + 10
    while lists(gke) < count:
        assert time.monotonic() < deadline, f"{lists(gke)} lists, not {count}"
        time.sleep(0.01)


def test_a_list_younger_than_the_ttl_is_not_read_again(pools, gke, clock):
    first = pools.list_node_pools()
    clock.now += TTL_S - 0.1
    assert pools.list_node_pools() == first and lists(gke) == 1


def test_an_older_list_is_shown_at_once_and_read_again_aside(pools, gke, clock):
    before = gpu_max(pools)
    pool_key = next(iter(gke.fake.pools))
    gke.fake.pools[pool_key]["gpu-pool"]["autoscaling"]["maxNodeCount"] = before + 3  # in GKE
    clock.now += TTL_S + 1
    assert gpu_max(pools) == before  # the last list, at once
    settle(gke, 2)
    deadline = time.monotonic() + 10
    while gpu_max(pools) != before + 3:  # the list read aside replaces it
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert lists(gke) == 2


def test_a_list_older_than_max_stale_is_waited_for(pools, gke, clock):
    pools.list_node_pools()
    clock.now += MAX_STALE_S + 1
    pools.list_node_pools()
    assert lists(gke) == 2


@pytest.mark.parametrize("change", ["started", "followed to its end"])
def test_a_change_made_here_is_shown_by_the_next_list(pools, gke, change):
    """An autoscaling change started (or followed to its end) through this client: the next
    list is GKE's, not the one read before."""
    assert gpu_max(pools) != 7
    if change == "started":
        pools.set_node_pool_autoscaling("gpu-pool", 0, 7)
        gke.fake.finish_all()
    else:
        pools.set_autoscaling("gpu-pool", 0, 7)
    assert gpu_max(pools) == 7 and lists(gke) == 2


def test_a_resize_reads_the_list_anew(pools, gke):
    pools.list_node_pools()
    pools.resize("gpu-pool", 1)
    assert lists(gke) == 1  # nothing read aside while the operation ran
    pools.list_node_pools()
    assert lists(gke) == 2


def test_gke_refusing_at_first_is_an_error_and_the_next_list_tries_again(pools, gke):
    gke.fake.deny = True
    with pytest.raises(GkeForbidden):
        pools.list_node_pools()
    gke.fake.deny = False
    assert {p.name for p in pools.list_node_pools()} == {"default-pool", "gpu-pool"}


def test_gke_refusing_later_shows_the_last_list_until_it_is_too_old(pools, gke, clock):
    first = pools.list_node_pools()
    clock.now += TTL_S + 1
    gke.fake.deny = True  # every later call fails
    assert pools.list_node_pools() == first  # at once; the read aside fails
    settle(gke, 2)
    assert pools.list_node_pools() == first  # still young enough: kept, read aside again
    clock.now += MAX_STALE_S
    with pytest.raises(GkeForbidden):  # too old to show: the page says why instead
        pools.list_node_pools()
