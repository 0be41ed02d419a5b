"""The new pod's load read by each rollout look (fake Kubernetes over HTTP): phases from
the pod and its log, the GPU type, the tail without the API server's timestamps."""

from __future__ import annotations

from datetime import datetime, timedelta

from tests.support.cluster import NS, seed_vllm
from webapp.cluster.pod_load import read_pod_load
from webapp.cluster.rollout import rollout_status


def stamped(start: datetime) -> list[str]:
    """A GPU start-up in three lines, prefixed as ``timestamps=true`` prefixes them."""

    def at(s: float) -> str:
        return (start + timedelta(seconds=s)).strftime("%Y-%m-%dT%H:%M:%S.%f000Z")

    def vllm(s: float) -> str:
        return (start + timedelta(seconds=s)).strftime("%m-%d %H:%M:%S")

    return [
        f"{at(1.25)} (EngineCore pid=9) INFO {vllm(1.25)} [gpu_model_runner.py:5039] Starting to load model m...",
        f"{at(4)} (EngineCore pid=9) INFO {vllm(4)} [default_loader.py:501] Loading weights took 2.00 seconds",
        f"{at(5.5)} INFO:     Application startup complete.",
    ]  # fmt: skip


def test_the_rollout_look_carries_the_new_pods_load(fake, cluster):
    seed_vllm(fake)
    snap = rollout_status(cluster, NS, "vllm")
    assert snap.load is not None and snap.load.gpu_type == "nvidia-l4"
    assert snap.load.progress.ready  # the fake's log ends with "Application startup complete."
    [pod] = [p for p in fake.list("pods", NS) if p["metadata"]["name"] == snap.load.pod]
    started = datetime.fromisoformat(
        pod["status"]["containerStatuses"][0]["state"]["running"]["startedAt"]
    )
    lines = stamped(started)
    fake.pod_logs[(NS, snap.load.pod)] = lines
    fake.reset_counts()
    load, tail = read_pod_load(cluster, NS, [pod], [], log_lines=2)
    assert tail == (lines[1][31:], "INFO:     Application startup complete.")  # no stamps
    took = {p.phase: p.seconds for p in load.progress.phases}
    # exact times from the stamps: the loading started 2 s before its "took" line
    assert took["starting vLLM"] == 1.25 and took["downloading weights"] == 0.75
    assert took["loading weights"] == 3.5
    assert load.progress.ready_at == started + timedelta(seconds=5.5)
    assert [r.resource for r in fake.requests] == ["pods/log"]


def test_a_pod_not_running_yet_has_phases_from_its_status_and_no_log_read(fake, cluster):
    pod = {"metadata": {"name": "p", "creationTimestamp": "2026-12-02T08:00:00Z"},
           "status": {"phase": "Pending"}, "spec": {}}  # fmt: skip
    load, tail = read_pod_load(cluster, NS, [pod], [], log_lines=20)
    assert tail == () and load.gpu_type == "" and load.progress.current == "scheduled"
    assert read_pod_load(cluster, NS, [], [], log_lines=20) == (None, ())
