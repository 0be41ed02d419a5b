"""The canary on the fleet (FLEET_CANARY) against the fake cluster seeded with our manifests,
two fake vLLM servers playing the two pools' pods, and a load generator that sends each
request by the HTTPRoute weights the canary writes (tests/support/gateway_traffic.py)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.fakes.k8s_server import FakeCluster
from tests.fakes.openai_server import FakeOpenAI, Script
from tests.support.admin_world import fake_gke, gke_settings
from tests.support.fleet import seed_fleet
from tests.support.gateway_traffic import GatewayTraffic
from webapp.admin.audit import AuditLog
from webapp.admin.canary import CanaryPlan
from webapp.admin.canary_fleet import FLEET_CANARY, FleetCanaryRequest, canary_pool_name
from webapp.admin.canary_job import canary_split
from webapp.admin.catalog import load_catalog
from webapp.admin.errors import InvalidCanaryPlan, NotEnoughCapacity
from webapp.admin.jobs import JobRegistry
from webapp.admin.status import connect_node_pools
from webapp.cluster import fleet, fleet_scaling
from webapp.cluster.errors import FleetError, InvalidModelSpec, InvalidPool, SwitchInProgress
from webapp.cluster.k8s import connect
from webapp.cluster.lock import acquire_lock
from webapp.cluster.pools import PoolSpec, pool_labels

NS = "vllm"
MODEL = "mistral-7b"  # the served model name, kept through the canary
STABLE, CANARY = "vllm-mistral", "vllm-mistral-canary"
NEW = "falcon-7b"  # the weights the canary loads
PLAN = CanaryPlan(soak_s=1.0, min_requests=5, max_ttft_ratio=2.0, max_waits=3)
CATALOG = load_catalog()
WRITES = ("create", "update", "patch", "delete")


@dataclass
class World:
    fc: FakeCluster
    cluster: object
    stable: FakeOpenAI
    canary: FakeOpenAI
    audit: AuditLog

    @property
    def urls(self) -> dict[str, str]:
        return {STABLE: self.stable.url, CANARY: self.canary.url}


@pytest.fixture
def world(tmp_path) -> Iterator[World]:
    nodes = [{"name": f"gpu-{i}"} for i in range(4)]
    with (
        FakeCluster(gpu_nodes=nodes) as fc,
        FakeOpenAI(model=MODEL) as stable,
        FakeOpenAI(model=MODEL) as canary,
    ):
        seed_fleet(fc, NS)
        cluster = connect(fc.kubeconfig_path)
        mistral = CATALOG.get(MODEL)
        fleet.create_pool(
            cluster, NS, PoolSpec(STABLE, MODEL), hf_repo=mistral.hf_repo,
            max_model_len=mistral.recommended.max_model_len,
            catalog_ids=[m.id for m in CATALOG.models],
        )  # fmt: skip
        assert fc.wait_for(lambda f: ready(f, STABLE), 10)
        for pool, server in ((STABLE, stable), (CANARY, canary)):
            server.set_script(Script(ttft_s=0.2, n_tokens=4))
            fc.proxy_pod_to(NS, server.url, labels=pool_labels(pool))  # the pods' /metrics
        audit = AuditLog.from_url(f"sqlite:///{tmp_path / 'audit.db'}")
        yield World(fc, cluster, stable, canary, audit)


def ready(fc: FakeCluster, pool: str) -> bool:
    dep = fc.get("deployments", pool, NS)
    return bool(dep and (dep.get("status") or {}).get("readyReplicas"))


def request(w: World, traffic: GatewayTraffic | None = None, **kw) -> FleetCanaryRequest:
    sleep = traffic.soak_for(CANARY, PLAN.min_requests + 2) if traffic else None
    args = dict(cluster=w.cluster, namespace=NS, pool=STABLE, model=NEW, plan=PLAN,
                catalog=CATALOG, poll_s=0.05, ready_timeout_s=10.0, sleep=sleep)  # fmt: skip
    return FleetCanaryRequest(**{**args, **kw})


def run(w: World, req: FleetCanaryRequest, registry: JobRegistry | None = None):
    job = (registry or JobRegistry()).start(FLEET_CANARY, req, actor="ann@example.com",
                                            audit=w.audit)  # fmt: skip
    assert job.wait(120)
    view = job.view()
    assert view.error is None, (view.error, view.messages)
    return view


def pools(w: World) -> list[str]:
    return [p.name for p in fleet.list_pools(w.cluster, NS)]


def lease_free(w: World) -> bool:
    acquire_lock(w.cluster, NS, "probe", pool=STABLE).release()
    return True


def test_a_good_canary_is_promoted_and_the_old_pool_removed_without_a_failed_request(world):
    w = world
    with GatewayTraffic(w.fc, NS, MODEL, w.urls) as traffic:
        view = run(w, request(w, traffic))
        after = traffic.split()
    res = view.result
    assert res.outcome == "promoted", view.messages
    assert (res.serving, res.removed) == (CANARY, STABLE)
    assert after == ((CANARY, 100),)
    assert pools(w) == ["vllm", CANARY]
    canary_dep = w.fc.get("deployments", CANARY, NS)
    args = canary_dep["spec"]["template"]["spec"]["containers"][0]["args"]
    assert f"--model={CATALOG.get(NEW).hf_repo}" in args
    assert f"--served-model-name={MODEL}" in args
    assert traffic.splits == [
        ((STABLE, 100),),  # before the canary pool exists
        ((STABLE, 100), (CANARY, 0)),  # while its replicas load
        *[((STABLE, 100 - s), (CANARY, s)) for s in (5, 25, 50, 100)],
        ((CANARY, 100),),  # promoted: the old pool is then removed
    ]
    assert traffic.failures() == 0, traffic.failed
    assert [s.share for s in view.detail.steps if s.decision.verdict == "promote"] == [
        5, 25, 50, 100]  # fmt: skip
    assert view.detail.phase == "done"
    entries = [(e.action, e.result) for e in w.audit.recent(10)]
    assert ("canary.result", "promoted") in entries and ("canary.start", "started") in entries
    assert lease_free(w)


def promote(w: World, **changes) -> tuple[dict, object]:
    """Run a canary of ``changes`` that promotes; the canary's vLLM container and the view."""
    with GatewayTraffic(w.fc, NS, MODEL, w.urls) as traffic:
        view = run(w, request(w, traffic, **changes))
    assert view.result.outcome == "promoted", view.messages
    assert pools(w) == ["vllm", CANARY] and traffic.failures() == 0
    return w.fc.get("deployments", CANARY, NS)["spec"]["template"]["spec"]["containers"][0], view


def test_a_canary_of_a_new_vllm_version_promotes(world):
    vllm, view = promote(world, model=None, image="vllm/vllm-openai:v0.33.1")
    assert vllm["image"] == "vllm/vllm-openai:v0.33.1"
    assert f"--model={CATALOG.get(MODEL).hf_repo}" in vllm["args"]  # the same weights
    assert view.detail.changes == ("vLLM v0.32.0 → v0.33.1",)
    start = next(e for e in world.audit.recent(10) if e.action == "canary.start")
    assert start.details["changes"] == ["vLLM v0.32.0 → v0.33.1"]
    assert start.details["image"] == "vllm/vllm-openai:v0.33.1"


def test_a_canary_of_vllm_flags_promotes(world):
    vllm, view = promote(world, model=None, max_model_len=4096, stream_interval=8)
    assert vllm["image"] == "vllm/vllm-openai:v0.32.0"
    assert {"--max-model-len=4096", "--stream-interval=8"} <= set(vllm["args"])
    assert view.detail.changes == ("--max-model-len 8192 → 4096", "--stream-interval 4 → 8")
    assert dict(fleet.list_pools(world.cluster, NS)[1].flags)["--stream-interval"] == "8"


def test_a_canary_with_3x_the_ttft_rolls_itself_back(world):
    w = world
    w.canary.set_script(Script(ttft_s=0.6, n_tokens=4))
    plan = CanaryPlan(**{**PLAN.__dict__, "steps": (10, 50, 100)})
    with GatewayTraffic(w.fc, NS, MODEL, w.urls) as traffic:
        view = run(w, request(w, traffic, plan=plan))
        after = traffic.split()
    res = view.result
    assert res.outcome == "rolled_back", view.messages
    assert res.reason.startswith("TTFT p95 of the canary") and "(limit 2×)" in res.reason
    assert (res.serving, res.removed) == (STABLE, CANARY)
    assert after == ((STABLE, 100),)
    assert pools(w) == ["vllm", STABLE]
    assert traffic.failures() == 0, traffic.failed
    assert view.detail.result.reason == res.reason
    assert lease_free(w)


def test_a_canary_whose_pods_crash_rolls_back_before_any_traffic_moves(world):
    w = world
    w.fc.inject_fault(kind="crash", model=CATALOG.get(NEW).hf_repo)
    with GatewayTraffic(w.fc, NS, MODEL, w.urls) as traffic:
        view = run(w, request(w, traffic, ready_timeout_s=1.0))
        after = traffic.split()
    res = view.result
    assert res.outcome == "rolled_back", view.messages
    assert "did not get ready within 1 s (0 of 1 ready)" in res.reason
    assert after == ((STABLE, 100),)
    assert [dict(s).get(CANARY, 0) for s in traffic.splits] == [0] * len(traffic.splits)
    assert pools(w) == ["vllm", STABLE]
    assert w.fc.get("deployments", CANARY, NS) is None
    assert traffic.failures() == 0
    assert lease_free(w)


def test_cancel_rolls_back(world):
    w = world
    w.fc.inject_fault(kind="slow", model=CATALOG.get(NEW).hf_repo)  # still loading at cancel
    registry = JobRegistry()
    job = registry.start(FLEET_CANARY, request(w), actor="ann@example.com", audit=w.audit)
    assert w.fc.wait_for(lambda f: f.get("deployments", CANARY, NS) is not None, 10)
    assert registry.cancel(FLEET_CANARY, "bob@example.com", w.audit)
    assert job.wait(30)
    assert job.view().result.outcome == "cancelled"
    assert pools(w) == ["vllm", STABLE]


@pytest.mark.parametrize(
    ("changes", "error", "words"),
    [
        ({"plan": CanaryPlan(steps=(50, 25, 100))}, InvalidCanaryPlan, "must grow"),
        ({"model": "gpt-17"}, InvalidPool, "not in the model catalog"),
        ({"pool": "Bad_Name"}, InvalidPool, "is not allowed"),
        ({"pool": "vllm"}, FleetError, "is the default pool"),
        ({"pool": "nope"}, FleetError, "no model pool named 'nope'"),
        ({"image": "evil.example/miner:v1"}, InvalidModelSpec, "not a vLLM image"),
        ({"image": "vllm/vllm-openai:latest"}, InvalidModelSpec, "not a release tag"),
        ({"model": None, "stream_interval": 0}, InvalidModelSpec, "stream_interval"),
        ({"gpu_memory_utilization": 1.5}, InvalidModelSpec, "gpu_memory_utilization"),
        ({"model": None, "max_model_len": 65536}, InvalidModelSpec, "at most 32768"),
        ({"model": None}, InvalidCanaryPlan, "changes nothing"),
        ({"model": MODEL, "max_model_len": 8192}, InvalidCanaryPlan, "changes nothing"),
    ],
)
def test_bad_requests_are_refused_with_nothing_written(world, changes, error, words):
    w = world
    w.fc.requests.clear()
    with pytest.raises(error, match=words):
        JobRegistry().start(FLEET_CANARY, request(w, **changes), actor="ann@example.com",
                            audit=w.audit)  # fmt: skip
    assert [r for r in w.fc.requests if r.verb in WRITES] == []
    assert ("canary.start", "refused") in [(e.action, e.result) for e in w.audit.recent(5)]


def test_a_second_admin_on_the_same_pool_is_refused_naming_the_holder(world):
    w = world
    held = acquire_lock(w.cluster, NS, "bob@example.com", pool=STABLE)
    with pytest.raises(SwitchInProgress, match="bob@example.com"):
        JobRegistry().start(FLEET_CANARY, request(w), actor="ann@example.com")
    held.release()
    assert w.fc.get("deployments", CANARY, NS) is None


def test_a_split_already_under_way_is_refused(world):
    w = world
    mistral = CATALOG.get(MODEL)
    fleet.create_pool(
        w.cluster, NS, PoolSpec("other", MODEL), hf_repo=mistral.hf_repo, max_model_len=4096,
        catalog_ids=[m.id for m in CATALOG.models], base=STABLE, canary=True,
    )  # fmt: skip
    fleet.set_split(w.cluster, NS, MODEL, canary_split(MODEL, STABLE, "other", 10))
    with pytest.raises(FleetError, match="already shares the traffic"):
        JobRegistry().start(FLEET_CANARY, request(w), actor="ann@example.com")


@pytest.mark.parametrize(
    ("pool", "canary"),
    [("vllm-mistral", "vllm-mistral-canary"), ("vllm-mistral-canary", "vllm-mistral"),
     ("-canary", "-canary-canary")],
)  # fmt: skip
def test_canary_names_alternate(pool, canary):
    assert canary_pool_name(pool) == canary


def test_a_canary_the_gpus_cannot_hold_is_refused_before_anything_is_written(world):
    w = world
    fleet_scaling.scale_pool(w.cluster, NS, STABLE, 2)  # 4 GPUs: vllm 1 + stable 2, 1 free
    assert w.fc.wait_for(lambda f: f.get("deployments", STABLE, NS)["status"].get(
        "readyReplicas") == 2, 10)  # fmt: skip
    w.fc.requests.clear()
    with fake_gke() as gke, pytest.raises(NotEnoughCapacity, match="the canary of pool"):
        node_pools = connect_node_pools(gke_settings(gke))  # the GPU pool: autoscaling 0..2
        JobRegistry().start(FLEET_CANARY, request(w, node_pools=node_pools),
                            actor="ann@example.com", audit=w.audit)  # fmt: skip
    assert [r for r in w.fc.requests if r.verb in WRITES] == []
    assert lease_free(w)
