"""The console's admin actions (``webapp.admin.actions``) run through the job registry
against the fake Kubernetes and GKE API servers (real clients over HTTP)."""

from __future__ import annotations

from functools import partial

import pytest

from tests.fakes.k8s_server import FakeCluster
from tests.support.admin_world import CLUSTER, LOCATION, PROJECT, fake_gke, gke_settings
from tests.support.cluster import FAST, LLAMA, NS, seed_vllm
from webapp.admin.actions import (
    NODE_POOL_AUTOSCALING,
    NODE_POOL_RESIZE,
    SWITCH,
    AutoscalingRequest,
    ResizeRequest,
    SwitchRequest,
)
from webapp.admin.audit import AuditLog
from webapp.admin.catalog import load_catalog
from webapp.admin.errors import JobBusy, NotCancellable, NotEnoughCapacity
from webapp.admin.jobs import JobRegistry
from webapp.admin.messages import admin_error_message
from webapp.admin.plan import plan_deploy, strategy_options
from webapp.admin.status import read_status
from webapp.cluster.errors import (
    Forbidden,
    OperationInProgress,
    PoolCannotSchedule,
    SwitchInProgress,
)
from webapp.cluster.k8s import connect
from webapp.cluster.node_pools import NodePools
from webapp.cluster.quota import gpu_quotas
from webapp.cluster.switch import SwitchResult

CATALOG = load_catalog()


@pytest.fixture
def fake():
    with FakeCluster(gpu_nodes=[{"name": "gpu-a"}, {"name": "gpu-b"}]) as fc:
        seed_vllm(fc)
        yield fc


@pytest.fixture
def audit(tmp_path):
    return AuditLog.from_url(f"sqlite:///{tmp_path / 'audit.db'}")


def _start(reg, fake, spec, audit, **kw):
    actor = kw.pop("admin", "ann@example.com")
    request = SwitchRequest(
        connect(fake.kubeconfig_path), spec, namespace=NS, deployment="vllm", service="vllm",
        options=FAST, **kw,
    )  # fmt: skip
    return reg.start(SWITCH, request, actor=actor, audit=audit)


def _resize(reg, gke, size, audit=None, admin="ann@example.com"):
    request = ResizeRequest(_pools(gke), "gpu-pool", size)
    return reg.start(NODE_POOL_RESIZE, request, actor=admin, audit=audit)


def _spec(model="mistral-7b", **kw):
    plan = plan_deploy(
        CATALOG.get(model), gpu="nvidia-l4", gpu_count=1, max_model_len=kw.pop("mml", 4096)
    )
    return plan.spec


def test_switch_in_place_with_audit(fake, audit):
    reg = JobRegistry()
    job = _start(reg, fake, _spec(), audit)
    assert job.wait(20)
    view = job.view()
    assert isinstance(view.result, SwitchResult) and view.result.outcome == "switched"
    assert fake.served_models(NS) == ["mistral-7b"]
    assert view.detail.snapshot is not None and view.detail.snapshot.state == "ready"
    assert (view.detail.model_before, view.detail.model_after) == (LLAMA.name, "mistral-7b")
    assert reg.current("switch") is job
    entries = [(e.action, e.result) for e in audit.recent()]
    assert entries == [("switch.result", "switched"), ("switch.start", "started")]


def test_failing_switch_is_rolled_back(fake, audit):
    fake.inject_fault(kind="crash", model="mistralai/Mistral-7B-v0.1")
    job = _start(JobRegistry(), fake, _spec(), audit)
    assert job.wait(30)
    res = job.view().result
    assert res.outcome == "rolled_back" and "crashed" in res.message
    assert fake.served_models(NS) == [LLAMA.name]
    assert audit.recent()[0].result == "rolled_back"


def test_second_switch_refused_in_process_and_across_processes(fake, audit):
    fake.slow_factor = 2000  # loads for minutes: the cancel always lands first
    fake.inject_fault(kind="slow", model="mistralai/Mistral-7B-v0.1")
    reg = JobRegistry()
    job = _start(reg, fake, _spec(), audit)
    with pytest.raises(SwitchInProgress) as local:
        _start(reg, fake, _spec("falcon-7b", mml=2048), audit, admin="bob@example.com")
    assert local.value.holder == "ann@example.com"
    with pytest.raises(SwitchInProgress) as remote:  # another replica of the console
        _start(JobRegistry(), fake, _spec("falcon-7b", mml=2048), audit, admin="bob@example.com")
    assert remote.value.holder == "ann@example.com"
    assert JobRegistry().cancel(SWITCH, "bob@example.com") is False
    assert reg.cancel(SWITCH, "bob@example.com", audit)
    assert job.wait(30)
    res = job.view().result
    assert res.outcome == "rolled_back" and res.cancelled
    assert fake.served_models(NS) == [LLAMA.name]
    actions = [(e.actor, e.action, e.result) for e in audit.recent()]
    assert ("bob@example.com", "switch.start", "refused") in actions
    assert ("bob@example.com", "switch.cancel", "requested") in actions
    assert actions[0] == ("ann@example.com", "switch.result", "rolled_back")


def test_forbidden_switch_raises_before_anything_changes(fake, audit):
    fake.forbid("create", "leases")
    reg = JobRegistry()
    with pytest.raises(Forbidden) as err:
        _start(reg, fake, _spec(), audit)
    assert "lock" in err.value.action
    assert reg.current("switch") is None
    assert audit.recent()[0].result == "refused"


def test_blue_green_with_probe(fake, audit):
    job = _start(
        JobRegistry(), fake, _spec(), audit, strategy="blue_green",
        model_probe=fake.model_probe,
    )  # fmt: skip
    assert job.wait(30)
    assert job.view().result.outcome == "switched"
    assert fake.get("services", "vllm", NS)["spec"]["selector"] != {"app": "vllm"}


@pytest.fixture
def gke():
    with fake_gke() as server:
        yield server


def _pools(gke):
    return NodePools.from_settings(gke_settings(gke), poll_interval_s=0.01)


def test_node_pool_resize_followed_to_done(gke, audit, fake):
    gke.fake.op_polls = 3
    job = _resize(JobRegistry(), gke, 0, audit)
    assert job.wait(20)
    view = job.view()
    assert view.error is None and view.result.done and view.detail.name == view.result.name
    assert any("RUNNING" in m for m in view.messages) and view.messages[-1].endswith("done.")
    assert gke.fake.node_counts["gpu-pool"] == 0
    assert [(e.action, e.result) for e in audit.recent()] == [
        ("nodepool.resize", "done"),
        ("nodepool.resize", "started"),
    ]
    fake.add_node("cpu-a", gpus=0, pool="default-pool", spot=False)
    st = read_status(connect(fake.kubeconfig_path), NS, _pools(gke))
    by_name = {p.name: p for p in st.pools}
    assert by_name["gpu-pool"].node_count == 2  # live count comes from Kubernetes nodes
    assert by_name["default-pool"].node_count == 1  # CPU pools too (was None: issue 9.5)
    # without a cluster the live count is unknown, not zero
    assert {p.node_count for p in read_status(None, NS, _pools(gke)).pools} == {None}


def test_node_pool_change_refused_while_gke_busy(gke, audit):
    gke.fake.hold_operations = True
    reg = JobRegistry()
    autoscaling = AutoscalingRequest(_pools(gke), "gpu-pool", 0, 3)
    first = reg.start(NODE_POOL_AUTOSCALING, autoscaling, actor="ann@example.com", audit=audit)
    assert first.view().messages[0].startswith("Setting autoscaling of gpu-pool to 0..3")
    with pytest.raises(JobBusy):  # one node-pool change at a time, resize or autoscaling
        _resize(reg, gke, 1, admin="bob@example.com")
    with pytest.raises(NotCancellable):  # a GKE operation runs to DONE
        reg.cancel(NODE_POOL_RESIZE, "bob@example.com")
    with pytest.raises(OperationInProgress):  # another console replica: GKE refuses
        _resize(JobRegistry(), gke, 1, audit, admin="bob@example.com")
    gke.fake.finish_all()
    assert first.wait(20) and first.view().error is None
    entries = [(e.actor, e.action, e.result) for e in audit.recent()]
    assert ("bob@example.com", "nodepool.resize", "refused") in entries
    assert entries[0] == ("ann@example.com", "nodepool.autoscaling", "done")
    done = audit.recent()[0].details
    assert (done["min_nodes"], done["max_nodes"]) == (0, 3) and done["operation"]


def test_failed_rollout_is_kept_for_the_page(fake, audit):
    fake.inject_fault(kind="crash", model="mistralai/Mistral-7B-v0.1")
    job = _start(JobRegistry(), fake, _spec(), audit)
    assert job.wait(30)
    view = job.view()
    failed = view.detail.failed_snapshot
    assert failed is not None and failed.state == "failed" and "crashed" in failed.summary
    assert view.detail.snapshot.state == "ready"  # the rollback's last look


def _two_gpu_spec():
    plan = plan_deploy(CATALOG.get("llama-2-13b"), gpu="nvidia-l4", gpu_count=2, max_model_len=4096)
    assert plan.spec is not None and plan.spec.tensor_parallel_size == 2
    return plan.spec


@pytest.mark.parametrize("with_gke", [False, True])
def test_switch_the_pool_cannot_schedule_is_refused_before_anything_changes(
    fake, audit, gke, with_gke
):
    """A non-UI caller is refused too: typed error, audited, nothing patched, lock free."""
    fake.reset_counts()
    reg = JobRegistry()
    pools = _pools(gke) if with_gke else None
    with pytest.raises(PoolCannotSchedule) as err:
        _start(reg, fake, _two_gpu_spec(), audit, pools=pools)
    assert "Nodes of gpu-pool have 1 × L4; llama-2-13b needs 2 on one node" in err.value.reason
    assert ("Partial check" in err.value.reason) is not with_gke
    assert admin_error_message(err.value) == err.value.reason
    assert fake.request_counts[("patch", "deployments")] == 0
    assert fake.get("leases", "vllm-switch-lock", NS)["spec"].get("holderIdentity") is None
    assert reg.current("switch") is None
    entry = audit.recent()[0]
    assert (entry.action, entry.result) == ("switch.start", "refused")
    assert "needs 2 on one node" in entry.details["reason"]
    assert fake.served_models(NS) == [LLAMA.name]


def test_blue_green_needs_room_beside_the_running_model(fake, audit, gke):
    """Both 1-GPU nodes busy and the pool at its maximum (2): in place can reuse the running
    model's GPU, blue/green cannot schedule its second pod and is refused. (The busy pod is
    in the console's namespace: pods of other namespaces are not listed, see below.)"""
    fake.add_pod("batch-job", node="gpu-b", namespace=NS, gpus=1)
    with pytest.raises(PoolCannotSchedule, match="gpu-pool is at its maximum of 2 node"):
        _start(JobRegistry(), fake, _spec(), audit, strategy="blue_green",
               model_probe=fake.model_probe, pools=_pools(gke))  # fmt: skip
    st = read_status(connect(fake.kubeconfig_path), NS, _pools(gke))
    in_place, bg = strategy_options(
        st.inventory, st.pools, gpus_needed=1, gpu_type="nvidia-l4", pool="gpu-pool"
    )
    assert in_place.allowed and not bg.allowed
    job = _start(JobRegistry(), fake, _spec(), audit, pools=_pools(gke))
    assert job.wait(20) and job.view().result.outcome == "switched"


def test_blue_green_beyond_the_gpu_quota_is_refused_before_anything_changes(fake, audit, gke):
    """The pool may grow (maximum 3) but the region's spot L4 quota is used up: given a quota
    reader, blue/green is refused with what to change; nothing patched, the Lease free."""
    fake.add_pod("batch-job", node="gpu-b", namespace=NS, gpus=1)
    gke.fake.pools[(PROJECT, LOCATION, CLUSTER)]["gpu-pool"]["autoscaling"]["maxNodeCount"] = 3
    gke.fake.add_region(PROJECT, LOCATION, {"PREEMPTIBLE_NVIDIA_L4_GPUS": (2, 2)})
    fake.reset_counts()
    with pytest.raises(NotEnoughCapacity) as err:
        _start(JobRegistry(), fake, _spec(), audit, strategy="blue_green",
               model_probe=fake.model_probe, pools=_pools(gke),
               read_quota=partial(gpu_quotas, gke_settings(gke)))  # fmt: skip
    said = admin_error_message(err.value)
    assert "ask for GPU quota: PREEMPTIBLE_NVIDIA_L4_GPUS in us-central1 is 2, 2 used" in said
    assert fake.request_counts[("patch", "deployments")] == 0
    assert fake.get("leases", "vllm-switch-lock", NS)["spec"].get("holderIdentity") is None
    entry = audit.recent()[0]
    assert (entry.action, entry.result) == ("switch.start", "refused")
    assert "ask for GPU quota" in entry.details["reason"]
