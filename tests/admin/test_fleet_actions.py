"""The fleet's actions (``webapp.admin.fleet_actions``) through the JobRegistry against the fake
Kubernetes API (real client over HTTP): deploy, scale, autoscale and remove a pool, each audited;
bad input refused with nothing written; one action per pool — a second admin (another console:
another registry) on the same pool is refused naming the holder, on another pool goes ahead."""

from __future__ import annotations

import pytest

from tests.fakes.k8s_server import FakeCluster
from tests.support.admin_world import fake_gke, gke_settings
from tests.support.fleet import seed_fleet
from webapp.admin.audit import AuditLog
from webapp.admin.catalog import load_catalog
from webapp.admin.errors import NotEnoughCapacity
from webapp.admin.fleet_actions import (
    POOL_AUTOSCALE,
    POOL_DEPLOY,
    POOL_REMOVE,
    POOL_SCALE,
    AutoscalePool,
    DeployPool,
    RemovePool,
    ScalePool,
    cancel_pool_job,
    pool_job,
    start_pool_job,
)
from webapp.admin.jobs import JobRegistry
from webapp.admin.messages import admin_error_message
from webapp.cluster import fleet
from webapp.cluster.errors import (
    InvalidAutoscaling,
    InvalidPool,
    ModelAlreadyServed,
    PoolInUse,
    SwitchInProgress,
)
from webapp.cluster.k8s import connect
from webapp.cluster.node_pools import NodePools

NS = "vllm"
CATALOG = load_catalog()
IDS = tuple(m.id for m in CATALOG.models)
ANN, BOB = "ann@example.com", "bob@example.com"


@pytest.fixture
def fake():
    with FakeCluster(gpu_nodes=[{"name": f"gpu-{i}"} for i in "abc"]) as fc:
        seed_fleet(fc, NS)
        yield fc


@pytest.fixture
def audit(tmp_path):
    return AuditLog.from_url(f"sqlite:///{tmp_path / 'audit.db'}")


def _deploy(fake, pool="mistral", model="mistral-7b", **kw) -> DeployPool:
    entry = CATALOG.get(model) if model in IDS else None
    return DeployPool(
        connect(fake.kubeconfig_path), NS, pool, model=model,
        hf_repo=entry.hf_repo if entry else "x/y", max_model_len=4096,
        replicas=kw.pop("replicas", 1), catalog_ids=IDS, gpu_type=kw.pop("gpu", "nvidia-l4"),
        gpus_per_replica=1, poll_s=0.05, **kw,
    )  # fmt: skip


def _node_pools() -> NodePools:
    """GKE's view (the fake's gpu-pool: autoscaling 0..2) for the capacity guard."""
    return NodePools.from_settings(gke_settings(GKE[0]))


@pytest.fixture(autouse=True)
def gke():
    with fake_gke() as server:
        GKE[:] = [server]
        yield server


GKE: list = []


def _audited(audit):
    return [(e.actor, e.action, e.target, e.result) for e in reversed(audit.recent())]


def _pools(fake) -> dict[str, tuple]:
    return {p.name: (p.model, p.ready, p.replicas)
            for p in fleet.list_pools(connect(fake.kubeconfig_path), NS)}  # fmt: skip


def _writes(fake) -> list:
    return [r for r in fake.requests if r.verb in ("create", "update", "patch", "delete")
            and r.resource != "leases"]  # fmt: skip


def test_deploy_scale_autoscale_remove_a_pool_audited(fake, audit):
    reg = JobRegistry()
    job = start_pool_job(reg, POOL_DEPLOY, _deploy(fake), actor=ANN, audit=audit)
    assert job.wait(20) and job.view().error is None, job.view().messages
    assert job.view().result == "done"
    assert _pools(fake)["mistral"] == ("mistral-7b", 1, 1)
    assert fleet.served_models(connect(fake.kubeconfig_path), NS) == ["llama-2-7b", "mistral-7b"]
    assert pool_job(reg, "mistral") is job and pool_job(reg, "vllm") is None

    cluster = connect(fake.kubeconfig_path)
    job = start_pool_job(reg, POOL_SCALE, ScalePool(cluster, NS, "mistral", 2, poll_s=0.05),
                         actor=ANN, audit=audit)  # fmt: skip
    assert job.wait(20) and job.view().result == "done", job.view().messages
    assert _pools(fake)["mistral"] == ("mistral-7b", 2, 2)
    assert "mistral: 2/2 replicas ready." in job.view().messages

    job = start_pool_job(reg, POOL_AUTOSCALE, AutoscalePool(cluster, NS, "mistral", 0, 3, 4.0,
                                                            project="my-project"),
                         actor=ANN, audit=audit)  # fmt: skip
    assert job.wait(20) and job.view().result == "done", job.view().messages
    (state,) = [p for p in fleet.list_pools(cluster, NS) if p.name == "mistral"]
    assert state.autoscaling is not None and state.autoscaling.scale_to_zero
    assert state.autoscaling.max_replicas == 3

    job = start_pool_job(reg, POOL_REMOVE, RemovePool(cluster, NS, "mistral"), actor=ANN,
                         audit=audit)  # fmt: skip
    assert job.wait(20) and job.view().result == "done", job.view().messages
    assert list(_pools(fake)) == ["vllm"]
    target = f"{NS}/mistral"
    assert _audited(audit) == [
        (ANN, "pool.deploy", target, "started"), (ANN, "pool.deploy", target, "done"),
        (ANN, "pool.scale", target, "started"), (ANN, "pool.scale", target, "done"),
        (ANN, "pool.autoscale", target, "started"), (ANN, "pool.autoscale", target, "done"),
        (ANN, "pool.remove", target, "started"), (ANN, "pool.remove", target, "done"),
    ]  # fmt: skip


BAD = [
    (POOL_DEPLOY, lambda f: _deploy(f, pool="Mistral_7B"), InvalidPool, "is not allowed"),
    (POOL_DEPLOY, lambda f: _deploy(f, model="gpt-4"), InvalidPool, "not in the model catalog"),
    (POOL_DEPLOY, lambda f: _deploy(f, model="llama-2-7b"), ModelAlreadyServed, "already served"),
    (POOL_DEPLOY, lambda f: _deploy(f, replicas=-1), InvalidPool, "from 0 to"),
    (POOL_DEPLOY, lambda f: _deploy(f, replicas=3, node_pools=_node_pools()),
     NotEnoughCapacity, "3 replicas"),
    (POOL_AUTOSCALE, lambda f: AutoscalePool(connect(f.kubeconfig_path), NS, "vllm", 3, 1, 4.0),
     InvalidAutoscaling, "above the maximum"),
    (POOL_AUTOSCALE, lambda f: AutoscalePool(connect(f.kubeconfig_path), NS, "vllm", 0, 1, 4.0),
     InvalidAutoscaling, "set GKE_PROJECT"),
    (POOL_SCALE, lambda f: ScalePool(connect(f.kubeconfig_path), NS, "vllm", 99),
     InvalidAutoscaling, "from 0 to 64"),
    (POOL_REMOVE, lambda f: RemovePool(connect(f.kubeconfig_path), NS, "vllm"), PoolInUse,
     "default pool"),
]  # fmt: skip


@pytest.mark.parametrize(("definition", "request_of", "error", "words"), BAD)
def test_bad_input_is_refused_in_plain_words_and_nothing_is_written(
    fake, audit, definition, request_of, error, words
):
    request = request_of(fake)
    fake.reset_counts()
    with pytest.raises(error) as exc:
        start_pool_job(JobRegistry(), definition, request, actor=ANN, audit=audit)
    assert words in admin_error_message(exc.value)
    assert _writes(fake) == []
    assert [(a, r) for _, a, _, r in _audited(audit)] == [(definition.audit_start, "refused")]


def test_two_admins_two_pools_go_ahead_same_pool_is_refused_naming_the_holder(fake, audit):
    ann_console, bob_console = JobRegistry(), JobRegistry()  # two admin processes
    fake.inject_fault(kind="crash", model="mistral-7b")  # Ann's replicas never get ready
    ann = start_pool_job(ann_console, POOL_DEPLOY, _deploy(fake), actor=ANN, audit=audit)
    other_model = _deploy(fake, pool="mistral", model="falcon-7b")
    with pytest.raises(SwitchInProgress) as exc:  # same pool, another console: the Lease
        start_pool_job(bob_console, POOL_DEPLOY, other_model, actor=BOB, audit=audit)
    assert (exc.value.holder, exc.value.pool) == (ANN, "mistral")
    assert ANN in admin_error_message(exc.value)
    with pytest.raises(SwitchInProgress) as same:  # same pool, same console: the registry
        start_pool_job(ann_console, POOL_DEPLOY, other_model, actor=BOB, audit=audit)
    assert same.value.holder == ANN
    bob = start_pool_job(bob_console, POOL_DEPLOY, _deploy(fake, pool="falcon", model="falcon-7b"),
                         actor=BOB, audit=audit)  # fmt: skip
    assert bob.wait(20) and bob.view().result == "done", bob.view().messages
    assert ann.running
    assert cancel_pool_job(ann_console, POOL_DEPLOY, "mistral", actor=ANN, audit=audit)
    assert ann.wait(20) and ann.view().result == "waiting"
    assert set(_pools(fake)) == {"vllm", "mistral", "falcon"}
    refusals = [(actor, r) for actor, a, _, r in _audited(audit) if r == "refused"]
    assert refusals == [(BOB, "refused"), (BOB, "refused")]
    assert fake.get("leases", "mistral-switch-lock", NS)["spec"].get("holderIdentity") is None
