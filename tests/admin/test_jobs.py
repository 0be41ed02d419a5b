"""The admin job API proven by a new action that adds nothing but its ``JobDefinition``.

"Restart the vLLM pod" is defined here, in the test: delete the pod through the fake
Kubernetes API (``begin``), then wait for the Deployment's replacement to be Ready
(``run``). The registry starts it, shows its progress, audits it, refuses a second one
while it runs (naming the holder), cancels it, and audits a failure with a plain message.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from tests.fakes.k8s_server import FakeCluster
from tests.support.cluster import NS, seed_vllm
from webapp.admin.audit import AuditLog
from webapp.admin.errors import JobBusy
from webapp.admin.jobs import Job, JobDefinition, JobRegistry
from webapp.admin.messages import admin_error_message
from webapp.cluster.errors import Forbidden
from webapp.cluster.inventory import inventory
from webapp.cluster.k8s import Cluster, call, connect

# ---------------------------------------------------------------- the new action


@dataclass(frozen=True)
class Restart:
    cluster: Cluster
    namespace: str
    pod: str


def _delete_pod(req: Restart, job: Job) -> Restart:
    call(
        f"restart pod {req.namespace}/{req.pod}",
        req.cluster.core.delete_namespaced_pod, req.pod, req.namespace,
    )  # fmt: skip
    job.progress(f"Deleted pod {req.pod}; waiting for its replacement.")
    return req


def _wait_for_replacement(req: Restart, job: Job) -> str | None:
    while not job.cancel.wait(0.05):
        pods = [p for p in inventory(req.cluster, req.namespace).pods if p.name != req.pod]
        job.progress(detail=tuple(p.name for p in pods))
        if any(p.ready for p in pods):
            new = next(p.name for p in pods if p.ready)
            job.progress(f"{new} is ready.")
            return new
    job.progress("Stopped waiting.")
    return None


RESTART = JobDefinition(
    kind="restart",
    target=lambda r: f"{r.namespace}/{r.pod}",
    begin=_delete_pod,
    run=_wait_for_replacement,
    audit_start="pod.restart",
    audit_result="pod.restart",
    outcome=lambda new: ("done", {"new_pod": new}) if new else ("cancelled", {}),
    audit_cancel="pod.restart.cancel",
)

# ---------------------------------------------------------------- the tests


@pytest.fixture
def fake():
    with FakeCluster(gpu_nodes=[{"name": "gpu-a"}]) as fc:
        seed_vllm(fc)
        yield fc


@pytest.fixture
def audit(tmp_path):
    return AuditLog.from_url(f"sqlite:///{tmp_path / 'audit.db'}")


def _restart(reg, fake, audit, actor="ann@example.com"):
    """Restart the one vLLM pod of the fake cluster; (the job, the pod's name)."""
    (pod,) = [p["metadata"]["name"] for p in fake.list("pods", NS)]
    request = Restart(connect(fake.kubeconfig_path), NS, pod)
    return reg.start(RESTART, request, actor=actor, audit=audit), pod


def _audited(audit):
    return [(e.actor, e.action, e.result) for e in reversed(audit.recent())]


def test_a_job_runs_shows_its_progress_and_is_audited(fake, audit):
    reg = JobRegistry()
    job, old = _restart(reg, fake, audit)
    assert job.view().messages[0] == f"Deleted pod {old}; waiting for its replacement."
    assert reg.current("restart") is job
    assert job.wait(20)
    view = job.view()
    assert view.error is None and view.result != old and not view.running
    assert view.messages[-1] == f"{view.result} is ready."
    assert view.result in view.detail  # the action's own progress record
    assert _audited(audit) == [
        ("ann@example.com", "pod.restart", "started"),
        ("ann@example.com", "pod.restart", "done"),
    ]
    assert audit.recent()[0].details == {"new_pod": view.result}


def test_a_second_start_is_refused_naming_the_holder_and_cancel_stops_the_first(fake, audit):
    fake.slow_factor = 2000  # the replacement loads for minutes: the job keeps running
    fake.inject_fault(kind="slow", model="meta-llama/Llama-2-7b-hf")
    reg = JobRegistry()
    job, old = _restart(reg, fake, audit)
    with pytest.raises(JobBusy) as busy:
        reg.start(RESTART, Restart(None, NS, "other"), actor="bob@example.com", audit=audit)
    assert busy.value.actor == "ann@example.com"
    assert f"ann@example.com is already changing {NS}/{old}" in admin_error_message(busy.value)
    assert reg.current("restart") is job and job.running
    assert reg.cancel(RESTART, "bob@example.com", audit)
    assert job.view().cancel_requested
    assert job.wait(20) and job.view().result is None
    assert "Cancel requested by bob@example.com." in job.view().messages
    assert reg.cancel(RESTART, "bob@example.com", audit) is False  # nothing runs any more
    assert _audited(audit) == [
        ("ann@example.com", "pod.restart", "started"),
        ("bob@example.com", "pod.restart", "refused"),
        ("bob@example.com", "pod.restart.cancel", "requested"),
        ("ann@example.com", "pod.restart", "cancelled"),
    ]


def test_a_failure_while_running_is_audited_with_a_plain_message(fake, audit):
    fake.forbid("list", "pods")  # the wait cannot read the pods
    job, _ = _restart(JobRegistry(), fake, audit)
    assert job.wait(20)
    view = job.view()
    assert isinstance(view.error, Forbidden) and view.result is None
    assert admin_error_message(view.error) == (
        f"The console's service account is not allowed to list pods in namespace {NS}. "
        "It needs the RBAC permission: list on pods. Grant it in the console's "
        "Role/ClusterRole (k8s/base) and try again."
    )
    entry = audit.recent()[0]
    assert (entry.action, entry.result) == ("pod.restart", "failed")
    assert f"not allowed to list pods in namespace {NS}" in entry.details["reason"]


def test_a_refused_start_changes_nothing_and_is_audited(fake, audit):
    fake.forbid("delete", "pods")
    reg = JobRegistry()
    with pytest.raises(Forbidden) as refused:
        _restart(reg, fake, audit)
    assert reg.current("restart") is None
    assert len(fake.list("pods", NS)) == 1
    # no RBAC rule is known for delete_namespaced_pod: the generic message, still plain
    assert admin_error_message(refused.value).startswith(
        f"The console's service account is not allowed to restart pod {NS}/"
    )
    assert _audited(audit) == [("ann@example.com", "pod.restart", "refused")]
