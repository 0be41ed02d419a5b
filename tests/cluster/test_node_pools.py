"""Node pools through the real google-cloud-container client against the fake GKE API."""

from __future__ import annotations

import pytest

from tests.fakes.gke_server import FakeGke, FakeGkeServer, gpu_pool
from tests.support.admin_world import CLUSTER, LOCATION, PROJECT, fake_gke, gke_settings
from webapp.cluster.errors import (
    GkeForbidden,
    GkeNotConfigured,
    GkeUnavailable,
    InvalidNodePoolRequest,
    NodePoolNotFound,
    OperationFailed,
    OperationInProgress,
)
from webapp.cluster.gke_mapping import plain_message
from webapp.cluster.node_pools import (
    ClusterRef,
    NodePoolInfo,
    NodePools,
    make_client,
    validate_pool_name,
    with_node_counts,
)
from webapp.settings import Settings

REF = ClusterRef(PROJECT, LOCATION, CLUSTER)


@pytest.fixture
def gke():
    with fake_gke() as server:
        yield server


@pytest.fixture
def pools(gke):
    """NodePools wired like production (from settings), pointing at the fake; no real sleeping."""
    return NodePools.from_settings(gke_settings(gke), poll_interval_s=0.0, sleep=lambda _s: None)


def test_resource_names():
    assert REF.name == "projects/demo-project/locations/us-central1/clusters/llm-cluster"
    assert REF.pool_name("gpu-pool") == REF.name + "/nodePools/gpu-pool"
    assert REF.operation_name("operation-1") == (
        "projects/demo-project/locations/us-central1/operations/operation-1"
    )
    assert REF.operation_name(REF.operation_name("operation-1")) == REF.operation_name(
        "operation-1"
    )


def test_list_node_pools(pools, gke):
    listed = {p.name: p for p in pools.list_node_pools()}
    assert set(listed) == {"default-pool", "gpu-pool"}
    gpu = listed["gpu-pool"]
    assert gpu == NodePoolInfo(
        name="gpu-pool",
        machine_type="g2-standard-8",
        accelerator_type="nvidia-l4",
        accelerator_count=1,
        initial_node_count=1,
        autoscaling_enabled=True,
        min_nodes=0,
        max_nodes=2,
        spot=True,
        status="RUNNING",
    )
    assert gpu.has_gpus and not listed["default-pool"].has_gpus
    assert listed["default-pool"].autoscaling_enabled is False
    # the request went to the v1 path, in the location form
    assert gke.fake.requests[0]["path"] == (
        f"/v1/projects/{PROJECT}/locations/{LOCATION}/clusters/{CLUSTER}/nodePools"
    )


def test_get_node_pool(pools):
    assert pools.get_node_pool("gpu-pool").accelerator_type == "nvidia-l4"


def test_resize_follows_operation_to_done(pools, gke):
    gke.fake.op_polls = 3
    seen = []
    final = pools.resize("gpu-pool", 2, on_progress=seen.append)
    assert final.done and final.error is None
    assert final.operation_type == "SET_NODE_POOL_SIZE"
    assert [op.status for op in seen] == ["RUNNING", "RUNNING", "RUNNING", "DONE"]
    assert gke.fake.node_counts["gpu-pool"] == 2
    post = next(r for r in gke.fake.requests if r["method"] == "POST")
    assert post["path"].endswith("/nodePools/gpu-pool:setSize")
    assert post["body"] == {"nodeCount": 2}  # camelCase proto3 JSON


def test_resize_to_zero(pools, gke):
    pools.resize("gpu-pool", 0)
    assert gke.fake.node_counts["gpu-pool"] == 0


def test_set_autoscaling_allows_scale_to_zero(pools, gke):
    final = pools.set_autoscaling("gpu-pool", 0, 4)
    assert final.done
    info = pools.get_node_pool("gpu-pool")
    assert (info.autoscaling_enabled, info.min_nodes, info.max_nodes) == (True, 0, 4)
    post = next(r for r in gke.fake.requests if r["method"] == "POST")
    assert post["path"].endswith(":setAutoscaling")
    # minNodeCount 0 is the proto3 default and is omitted on the wire
    assert post["body"] == {"autoscaling": {"enabled": True, "maxNodeCount": 4}}


def test_disable_autoscaling(pools):
    op = pools.wait(pools.set_node_pool_autoscaling("gpu-pool", 0, 0, enabled=False))
    assert op.done
    assert pools.get_node_pool("gpu-pool").autoscaling_enabled is False


def test_one_operation_at_a_time(pools, gke):
    gke.fake.hold_operations = True
    first = pools.set_node_pool_size("gpu-pool", 1)
    assert first.status == "RUNNING"
    with pytest.raises(OperationInProgress) as info:
        pools.set_autoscaling("gpu-pool", 0, 3)
    assert info.value.operation == first.name
    assert "one at a time" in str(info.value)
    gke.fake.finish_all()
    assert pools.get_operation(first.name).done
    # once the first is done, the second is accepted
    assert pools.set_autoscaling("gpu-pool", 0, 3).done


def test_operation_error_is_raised(pools, gke):
    gke.fake.fail_operation_with = "Insufficient regional quota to satisfy request: NVIDIA_L4_GPUS."
    with pytest.raises(OperationFailed, match="NVIDIA_L4_GPUS"):
        pools.resize("gpu-pool", 2)
    assert gke.fake.node_counts["gpu-pool"] == 1  # nothing applied


def test_operation_timeout(gke):
    gke.fake.hold_operations = True
    now = [0.0]

    def sleep(s):
        now[0] += 10.0

    pools = NodePools(
        make_client(api_endpoint=gke.endpoint),
        REF,
        poll_interval_s=10.0,
        timeout_s=30.0,
        sleep=sleep,
        clock=lambda: now[0],
    )
    with pytest.raises(OperationFailed, match="still RUNNING"):
        pools.resize("gpu-pool", 2)


def test_forbidden(pools, gke):
    gke.fake.deny = True
    with pytest.raises(GkeForbidden, match="not allowed"):
        pools.list_node_pools()
    with pytest.raises(GkeForbidden):
        pools.resize("gpu-pool", 1)


@pytest.mark.parametrize(
    "call",
    [
        lambda p: p.get_node_pool("no-such-pool"),
        lambda p: p.set_node_pool_size("no-such-pool", 1),
        lambda p: p.set_node_pool_autoscaling("no-such-pool", 0, 2),
    ],
)
def test_unknown_pool_names_the_pools_there_and_no_address(pools, call):
    with pytest.raises(NodePoolNotFound) as err:
        call(pools)
    assert str(err.value) == (
        "Node pool 'no-such-pool' does not exist in cluster llm-cluster (location us-central1). "
        "Pools there: default-pool, gpu-pool."
    )
    assert "http" not in str(err.value) and "projects/" not in str(err.value)


def test_unknown_cluster_says_which_settings_to_check(gke):
    pools = NodePools(make_client(api_endpoint=gke.endpoint), ClusterRef(PROJECT, LOCATION, "nope"))
    for call in (lambda: pools.get_node_pool("gpu-pool"), pools.list_node_pools):
        with pytest.raises(NodePoolNotFound) as err:
            call()
        assert "nope" in str(err.value) and "GKE_CLUSTER" in str(err.value)
        assert "http" not in str(err.value) and "projects/" not in str(err.value)


NAME_RULE = "1-40 lowercase letters, digits and hyphens"


@pytest.mark.parametrize(
    ("name", "valid"),
    [
        ("gpu-pool", True),
        ("a", True),
        ("pool-2", True),
        ("a" * 40, True),
        ("gpu/pool", False),
        ("../default-pool", False),
        ("GPU-pool", False),
        ("a" * 41, False),
        ("", False),
        ("1pool", False),
        ("pool-", False),
        ("-pool", False),
        ("gpu_pool", False),
        ("gpu pool", False),
    ],
)
def test_pool_names_are_checked_before_any_call(pools, gke, name, valid):
    if valid:
        assert validate_pool_name(name) == name
        return
    calls = (
        lambda: pools.get_node_pool(name),
        lambda: pools.set_node_pool_size(name, 1),
        lambda: pools.set_node_pool_autoscaling(name, 0, 2),
        lambda: pools.resize(name, 0),
        lambda: pools.set_autoscaling(name, 0, 2),
    )
    for call in calls:
        with pytest.raises(InvalidNodePoolRequest, match=NAME_RULE):
            call()
    assert gke.fake.requests == []  # GKE never saw the name


@pytest.mark.parametrize(
    ("raw", "plain"),
    [
        ("GET http://127.0.0.1:9/v1/projects/p/x?%24alt=json: Not found: x.", "Not found: x."),
        (
            "POST https://container.googleapis.com/v1/a:setSize: Node pool size is out of range.",
            "Node pool size is out of range.",
        ),
        ("See https://cloud.google.com/x for details.", "See (address omitted) for details."),
        ("Node pool size is out of range.", "Node pool size is out of range."),
    ],
)
def test_plain_message_drops_the_request_address(raw, plain):
    assert plain_message(raw) == plain


@pytest.mark.parametrize(
    ("pool", "max_nodes", "zones", "total"),
    [
        (gpu_pool(autoscaling=(0, 2)), 2, 1, 2),
        (gpu_pool(autoscaling=(0, 2), locations=("us-central1-a", "us-central1-b")), 2, 2, 4),
        (gpu_pool(autoscaling=(0, 3), locations=("a", "b"), total_limits=True), 3, 2, 3),
    ],
)
def test_autoscaling_limits_per_zone_or_total(pool, max_nodes, zones, total):
    """scripts/setup_gke.sh creates the GPU pool with --total-max-nodes: GKE then reports the
    limits in the total fields and leaves the per-zone ones at 0."""
    gke = FakeGke()
    gke.add_cluster(PROJECT, LOCATION, CLUSTER, pool)
    with FakeGkeServer(gke) as server:
        (info,) = NodePools(make_client(api_endpoint=server.endpoint), REF).list_node_pools()
    assert info.max_nodes == max_nodes and info.max_nodes_total == total
    assert info.zones == zones


def test_server_error_is_unavailable(pools, gke):
    gke.fake.fail_next(500, "INTERNAL", "backend error")
    with pytest.raises(GkeUnavailable):
        pools.list_node_pools()


def test_unreachable_api():
    # a port nothing listens on (bound then closed)
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    pools = NodePools(make_client(api_endpoint=f"http://127.0.0.1:{port}"), REF)
    with pytest.raises(GkeUnavailable, match="could not be reached"):
        pools.set_node_pool_size("gpu-pool", 1)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda p: p.set_node_pool_size("gpu-pool", -1), "0 or more"),
        (lambda p: p.set_node_pool_size("gpu-pool", 1.5), "whole number"),
        (lambda p: p.set_node_pool_autoscaling("gpu-pool", 3, 2), "minimum cannot be larger"),
        (lambda p: p.set_node_pool_autoscaling("gpu-pool", 0, 0), "at least 1"),
        (lambda p: p.set_node_pool_autoscaling("gpu-pool", -1, 2), "0 or more"),
    ],
)
def test_invalid_requests_refused_before_calling(pools, gke, call, message):
    with pytest.raises(InvalidNodePoolRequest, match=message):
        call(pools)
    assert gke.fake.requests == []


def test_api_rejection_is_invalid_request(pools, gke):
    gke.fake.fail_next(400, "INVALID_ARGUMENT", "Node pool size is out of range.")
    with pytest.raises(InvalidNodePoolRequest, match="out of range") as err:
        pools.set_node_pool_size("gpu-pool", 5)
    assert "http" not in str(err.value)


@pytest.mark.parametrize(
    ("project", "location", "cluster", "missing"),
    [
        ("", "", "", "GKE_PROJECT, GKE_LOCATION, GKE_CLUSTER"),
        ("p", "", "c", "GKE_LOCATION"),
        ("p", "l", "", "GKE_CLUSTER"),
    ],
)
def test_not_configured(project, location, cluster, missing):
    settings = Settings(gke_project=project, gke_location=location, gke_cluster=cluster)
    with pytest.raises(GkeNotConfigured, match=missing):
        NodePools.from_settings(settings)


def test_with_node_counts(pools):
    counted = with_node_counts(pools.list_node_pools(), {"gpu-pool": 2})
    assert {p.name: p.node_count for p in counted} == {"default-pool": 0, "gpu-pool": 2}
