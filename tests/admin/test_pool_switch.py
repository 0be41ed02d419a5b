"""Switching one pool's model (``webapp.admin.pool_switch.POOL_SWITCH``) against the fake API:
the pool's Deployment switches in place and its route rule follows the new model name; a model
another pool serves is refused before anything changes; a switch that rolls back keeps the
rule; audited pool.switch."""

from __future__ import annotations

import pytest

from tests.fakes.k8s_server import FakeCluster
from tests.support.cluster import FAST
from tests.support.fleet import seed_fleet
from webapp.admin.actions import SwitchRequest
from webapp.admin.audit import AuditLog
from webapp.admin.catalog import load_catalog
from webapp.admin.fleet_actions import start_pool_job
from webapp.admin.jobs import JobRegistry
from webapp.admin.plan import plan_deploy
from webapp.admin.pool_switch import POOL_SWITCH, PoolSwitch
from webapp.cluster import fleet
from webapp.cluster.errors import ModelAlreadyServed
from webapp.cluster.k8s import connect
from webapp.cluster.pools import PoolSpec

NS = "vllm"
CATALOG = load_catalog()
IDS = tuple(m.id for m in CATALOG.models)
ANN = "ann@example.com"


@pytest.fixture
def fake():
    with FakeCluster(gpu_nodes=[{"name": "gpu-a"}, {"name": "gpu-b"}]) as fc:
        seed_fleet(fc, NS)
        fleet.create_pool(connect(fc.kubeconfig_path), NS, PoolSpec("second", "mistral-7b"),
                          hf_repo="mistralai/Mistral-7B-v0.1", max_model_len=4096,
                          catalog_ids=IDS)  # fmt: skip
        assert fc.wait_for(lambda f: "mistral-7b" in f.served_models(NS), 10)
        yield fc


@pytest.fixture
def audit(tmp_path):
    return AuditLog.from_url(f"sqlite:///{tmp_path / 'audit.db'}")


def _switch(fake, model: str, pool="second", old="mistral-7b") -> PoolSwitch:
    spec = plan_deploy(CATALOG.get(model), gpu="nvidia-l4", gpu_count=1, max_model_len=2048).spec
    request = SwitchRequest(connect(fake.kubeconfig_path), spec, namespace=NS, deployment=pool,
                            service=pool, options=FAST)  # fmt: skip
    return PoolSwitch(request, old)


def _routes(fake) -> dict:
    cluster = connect(fake.kubeconfig_path)
    return {p.name: (p.model, tuple(b.pool for b in p.backends))
            for p in fleet.list_pools(cluster, NS)}  # fmt: skip


def test_a_pool_switches_its_model_and_its_route_follows(fake, audit):
    job = start_pool_job(JobRegistry(), POOL_SWITCH, _switch(fake, "falcon-7b"), actor=ANN,
                         audit=audit)  # fmt: skip
    assert job.wait(30) and job.view().result.outcome == "switched", job.view().messages
    assert _routes(fake)["second"] == ("falcon-7b", ("second",))
    assert fleet.served_models(connect(fake.kubeconfig_path), NS) == ["llama-2-7b", "falcon-7b"]
    assert [(e.action, e.result) for e in reversed(audit.recent())] == [
        ("pool.switch", "started"), ("pool.switch", "switched")]  # fmt: skip


def test_a_model_another_pool_serves_is_refused_before_anything_changes(fake, audit):
    fake.reset_counts()
    with pytest.raises(ModelAlreadyServed):
        start_pool_job(JobRegistry(), POOL_SWITCH, _switch(fake, "llama-2-7b"), actor=ANN,
                       audit=audit)  # fmt: skip
    assert [r for r in fake.requests if r.verb not in ("get", "list")] == []
    assert [(e.action, e.result) for e in audit.recent()] == [("pool.switch", "refused")]


def test_a_switch_that_rolls_back_keeps_the_rule(fake, audit):
    fake.inject_fault(kind="crash", model="falcon-7b")
    job = start_pool_job(JobRegistry(), POOL_SWITCH, _switch(fake, "falcon-7b"), actor=ANN,
                         audit=audit)  # fmt: skip
    assert job.wait(60) and job.view().result.outcome == "rolled_back", job.view().messages
    assert _routes(fake)["second"] == ("mistral-7b", ("second",))
