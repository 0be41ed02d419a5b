"""admin_service against the fake Kubernetes and GKE API servers (real clients over HTTP)."""

from __future__ import annotations

import pytest

from tests.fakes.k8s_server import FakeCluster
from tests.support.admin_world import fake_gke, gke_settings
from tests.support.cluster import FAST, LLAMA, NS, seed_vllm
from webapp.admin import service as svc
from webapp.admin.audit import AuditLog
from webapp.admin.catalog import load_catalog
from webapp.admin.sizing import SizingError, Verdict
from webapp.admin.ui.messages import admin_error_message
from webapp.cluster.errors import Forbidden, PoolCannotSchedule, SwitchInProgress
from webapp.cluster.inventory import PodInfo
from webapp.cluster.k8s import connect
from webapp.cluster.node_pools import NodePools, OperationInProgress
from webapp.cluster.switch import SwitchResult

CATALOG = load_catalog()


@pytest.mark.parametrize(
    ("model", "gpu", "count", "mml", "conc", "verdict", "tp", "quant", "blocked"),
    [
        ("llama-2-7b", "nvidia-l4", 1, 4096, 1, Verdict.FITS, 1, None, ""),
        ("llama-2-13b", "nvidia-l4", 2, 4096, 1, Verdict.NEEDS_TENSOR_PARALLEL, 2, None, ""),
        ("llama-2-13b", "nvidia-l4", 1, 4096, 1, Verdict.NEEDS_QUANTIZATION, 1, "fp8", ""),
        ("mistral-7b", "nvidia-tesla-t4", 1, 8192, 1, Verdict.NEEDS_QUANTIZATION, 0, None,
         "pre-quantized checkpoint"),
        ("llama-3-1-70b-instruct", "nvidia-tesla-t4", 1, 131072, 1, Verdict.DOES_NOT_FIT, 0,
         None, "does not fit"),
        ("llama-3-1-70b-instruct", "nvidia-l4", 1, 4096, 1,
         Verdict.NEEDS_TENSOR_PARALLEL, 0, None, "raise the GPU count"),
    ],
)  # fmt: skip
def test_plan_deploy(model, gpu, count, mml, conc, verdict, tp, quant, blocked):
    plan = svc.plan_deploy(
        CATALOG.get(model), gpu=gpu, gpu_count=count, max_model_len=mml, concurrency=conc
    )
    assert plan.sizing.verdict is verdict
    if blocked:
        assert plan.spec is None and blocked in plan.blocked
    else:
        assert plan.blocked == ""
        assert plan.spec.name == model and plan.spec.tensor_parallel_size == tp
        assert plan.spec.quantization == quant and plan.spec.gpu_type == gpu
        assert plan.spec.revision == CATALOG.get(model).revision


def test_plan_deploy_rejects_context_above_model_maximum():
    with pytest.raises(SizingError):
        svc.plan_deploy(CATALOG.get("llama-2-7b"), gpu="nvidia-l4", gpu_count=1, max_model_len=9000)


def _pod(name, model="", age_s=60.0):
    return PodInfo(name=name, namespace=NS, phase="Running", ready=True, restarts=0, node="n",
                   age_s=age_s, reason="", message="", model=model, ip="")  # fmt: skip


@pytest.mark.parametrize(
    ("pods", "expected"),
    [
        ([], None),
        ([_pod("a"), _pod("b")], "a"),  # no vLLM pod: the first
        ([_pod("worker", age_s=1), _pod("vllm-old", "llama-2-7b")], "vllm-old"),
        # a switch: the new pod is the newest serving pod, wherever the API lists it
        ([_pod("vllm-old", "llama-2-7b", 600), _pod("vllm-new", "mistral-7b", 5)], "vllm-new"),
        ([_pod("vllm-new", "mistral-7b", 5), _pod("vllm-old", "llama-2-7b", 600)], "vllm-new"),
    ],
)
def test_log_pod_is_the_newest_serving_pod(pods, expected):
    assert svc.log_pod(pods) == expected


@pytest.fixture
def fake():
    with FakeCluster(gpu_nodes=[{"name": "gpu-a"}, {"name": "gpu-b"}]) as fc:
        seed_vllm(fc)
        yield fc


@pytest.fixture
def audit(tmp_path):
    return AuditLog.from_url(f"sqlite:///{tmp_path / 'audit.db'}")


def _start(reg, fake, spec, audit, **kw):
    return reg.start_switch(
        connect(fake.kubeconfig_path), spec, admin=kw.pop("admin", "ann@example.com"),
        namespace=NS, deployment="vllm", service="vllm", audit=audit, options=FAST, **kw,
    )  # fmt: skip


def _spec(model="mistral-7b", **kw):
    plan = svc.plan_deploy(
        CATALOG.get(model), gpu="nvidia-l4", gpu_count=1, max_model_len=kw.pop("mml", 4096)
    )
    return plan.spec


def test_switch_in_place_with_audit(fake, audit):
    reg = svc.JobRegistry()
    job = _start(reg, fake, _spec(), audit)
    assert job.wait(20)
    view = job.view()
    assert isinstance(view.result, SwitchResult) and view.result.outcome == "switched"
    assert fake.served_models(NS) == ["mistral-7b"]
    assert view.snapshot is not None and view.snapshot.state == "ready"
    assert reg.current("switch") is job
    entries = [(e.action, e.result) for e in audit.recent()]
    assert entries == [("switch.result", "switched"), ("switch.start", "started")]


def test_failing_switch_is_rolled_back(fake, audit):
    fake.inject_fault(kind="crash", model="mistralai/Mistral-7B-v0.1")
    job = _start(svc.JobRegistry(), fake, _spec(), audit)
    assert job.wait(30)
    res = job.view().result
    assert res.outcome == "rolled_back" and "crashed" in res.message
    assert fake.served_models(NS) == [LLAMA.name]
    assert audit.recent()[0].result == "rolled_back"


def test_second_switch_refused_in_process_and_across_processes(fake, audit):
    fake.slow_factor = 2000  # loads for minutes: the cancel always lands first
    fake.inject_fault(kind="slow", model="mistralai/Mistral-7B-v0.1")
    reg = svc.JobRegistry()
    job = _start(reg, fake, _spec(), audit)
    with pytest.raises(SwitchInProgress) as local:
        _start(reg, fake, _spec("falcon-7b", mml=2048), audit, admin="bob@example.com")
    assert local.value.holder == "ann@example.com"
    with pytest.raises(SwitchInProgress) as remote:  # another replica of the console
        _start(
            svc.JobRegistry(), fake, _spec("falcon-7b", mml=2048), audit, admin="bob@example.com"
        )
    assert remote.value.holder == "ann@example.com"
    assert svc.JobRegistry().cancel_switch("bob@example.com") is False
    assert reg.cancel_switch("bob@example.com", audit)
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
    reg = svc.JobRegistry()
    with pytest.raises(Forbidden) as err:
        _start(reg, fake, _spec(), audit)
    assert "lock" in err.value.action
    assert reg.current("switch") is None
    assert audit.recent()[0].result == "refused"


def test_blue_green_with_probe(fake, audit):
    job = _start(
        svc.JobRegistry(), fake, _spec(), audit, strategy="blue_green",
        model_probe=fake.model_probe,
    )  # fmt: skip
    assert job.wait(30)
    assert job.view().result.outcome == "switched"
    assert fake.get("services", "vllm", NS)["spec"]["selector"] != {"app": "vllm"}


def test_strategy_options_and_status(fake):
    cluster = connect(fake.kubeconfig_path)
    st = svc.read_status(cluster, NS, None)
    assert st.cluster_error is None and st.pools is None
    assert [n.name for n in st.inventory.nodes] == ["gpu-a", "gpu-b"]
    in_place, bg = svc.strategy_options(
        st.inventory, None, gpus_needed=1, gpu_type="nvidia-l4", pool="gpu-pool"
    )
    assert in_place.allowed and bg.allowed
    in_place2, bg2 = svc.strategy_options(
        st.inventory, None, gpus_needed=2, gpu_type="nvidia-l4", pool="gpu-pool", model="big"
    )
    assert not bg2.allowed and not in_place2.allowed  # 1-GPU nodes: neither can work
    assert in_place2.reason == bg2.reason
    assert "Nodes of gpu-pool have 1 × L4; big needs 2 on one node" in bg2.reason
    assert "Partial check" in bg2.reason  # no GKE: only the running nodes were seen


@pytest.fixture
def gke():
    with fake_gke() as server:
        yield server


def _pools(gke):
    return NodePools.from_settings(gke_settings(gke), poll_interval_s=0.01)


def test_node_pool_resize_followed_to_done(gke, audit, fake):
    gke.fake.op_polls = 3
    job = svc.JobRegistry().start_node_pool_change(
        _pools(gke), "gpu-pool", admin="ann@example.com", size=0, audit=audit
    )
    assert job.wait(20)
    view = job.view()
    assert view.error is None and view.result.done
    assert any("RUNNING" in m for m in view.messages) and view.messages[-1].endswith("done.")
    assert gke.fake.node_counts["gpu-pool"] == 0
    assert [(e.action, e.result) for e in audit.recent()] == [
        ("nodepool.resize", "done"),
        ("nodepool.resize", "started"),
    ]
    fake.add_node("cpu-a", gpus=0, pool="default-pool", spot=False)
    st = svc.read_status(connect(fake.kubeconfig_path), NS, _pools(gke))
    by_name = {p.name: p for p in st.pools}
    assert by_name["gpu-pool"].node_count == 2  # live count comes from Kubernetes nodes
    assert by_name["default-pool"].node_count == 1  # CPU pools too (was None: issue 9.5)
    # without a cluster the live count is unknown, not zero
    assert {p.node_count for p in svc.read_status(None, NS, _pools(gke)).pools} == {None}


def test_node_pool_change_refused_while_gke_busy(gke, audit):
    gke.fake.hold_operations = True
    reg = svc.JobRegistry()
    first = reg.start_node_pool_change(
        _pools(gke), "gpu-pool", admin="ann@example.com", autoscaling=(0, 3), audit=audit
    )
    with pytest.raises(svc.JobBusy):
        reg.start_node_pool_change(_pools(gke), "gpu-pool", admin="bob@example.com", size=1)
    with pytest.raises(OperationInProgress):  # another console replica: GKE refuses
        svc.JobRegistry().start_node_pool_change(
            _pools(gke), "gpu-pool", admin="bob@example.com", size=1, audit=audit
        )
    gke.fake.finish_all()
    assert first.wait(20) and first.view().error is None
    results = [(e.actor, e.result) for e in audit.recent()]
    assert ("bob@example.com", "refused") in results and results[0] == ("ann@example.com", "done")


def test_failed_rollout_is_kept_for_the_page(fake, audit):
    fake.inject_fault(kind="crash", model="mistralai/Mistral-7B-v0.1")
    job = _start(svc.JobRegistry(), fake, _spec(), audit)
    assert job.wait(30)
    view = job.view()
    assert view.failed_snapshot is not None and view.failed_snapshot.state == "failed"
    assert "crashed" in view.failed_snapshot.summary
    assert view.snapshot.state == "ready"  # the rollback's last look


def _two_gpu_spec():
    plan = svc.plan_deploy(
        CATALOG.get("llama-2-13b"), gpu="nvidia-l4", gpu_count=2, max_model_len=4096
    )
    assert plan.spec is not None and plan.spec.tensor_parallel_size == 2
    return plan.spec


@pytest.mark.parametrize("with_gke", [False, True])
def test_switch_the_pool_cannot_schedule_is_refused_before_anything_changes(
    fake, audit, gke, with_gke
):
    """A non-UI caller is refused too: typed error, audited, nothing patched, lock free."""
    fake.reset_counts()
    reg = svc.JobRegistry()
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
        _start(svc.JobRegistry(), fake, _spec(), audit, strategy="blue_green",
               model_probe=fake.model_probe, pools=_pools(gke))  # fmt: skip
    st = svc.read_status(connect(fake.kubeconfig_path), NS, _pools(gke))
    in_place, bg = svc.strategy_options(
        st.inventory, st.pools, gpus_needed=1, gpu_type="nvidia-l4", pool="gpu-pool"
    )
    assert in_place.allowed and not bg.allowed
    job = _start(svc.JobRegistry(), fake, _spec(), audit, pools=_pools(gke))
    assert job.wait(20) and job.view().result.outcome == "switched"


def test_gpus_held_in_other_namespaces_are_not_seen(fake, gke):
    """Least privilege: the console lists pods of its own namespace only, so a GPU held by
    another namespace's pod looks free (the scheduler would keep a second vLLM pod Pending,
    and a switch whose pod stays unschedulable rolls back)."""
    fake.add_pod("batch-job", node="gpu-b", namespace="jobs", gpus=1)
    st = svc.read_status(connect(fake.kubeconfig_path), NS, _pools(gke))
    assert {n.name: n.gpu_requested for n in st.inventory.nodes} == {"gpu-a": 1, "gpu-b": 0}
    _, bg = svc.strategy_options(
        st.inventory, st.pools, gpus_needed=1, gpu_type="nvidia-l4", pool="gpu-pool"
    )
    assert bg.allowed
