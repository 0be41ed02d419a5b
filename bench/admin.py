"""Parts 3 and 4: admin status at scale, and model-switch overhead, on the fake cluster.

Part 3 fills ``tests/fakes/k8s_server.FakeCluster`` with GPU nodes and pods and times
one status refresh (``webapp.cluster.inventory.inventory`` + ``gpu_nodes``) through
the real ``kubernetes`` client, counting API requests per refresh by verb and
resource; a small cluster is measured too, to show the count does not grow.
Part 4 switches the model in place and times from the moment the fake's new vLLM
pod turns Ready to the moment ``switch_model`` yields its result.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from bench.common import median

NS = "vllm"


@dataclass
class StatusRow:
    """Timing and API calls of one status refresh at one cluster size."""

    nodes: int
    pods: int
    seconds: list[float]
    calls: dict[str, int]
    view: str = "inventory()"

    @property
    def median_s(self) -> float | None:
        return median(self.seconds)

    @property
    def max_s(self) -> float:
        return max(self.seconds)

    @property
    def total_calls(self) -> int:
        return sum(self.calls.values())


def _fill(fc, nodes: int, pods: int) -> None:
    """``nodes`` 4-GPU L4 nodes, a vLLM Deployment, and static pods up to ``pods`` in total."""
    from tests.support.cluster import seed_vllm

    for i in range(nodes):
        fc.add_node(f"gpu-{i:03d}", gpus=4, pool="gpu-pool" if i % 2 else "gpu-pool-b")
    seed_vllm(fc)
    have = len(fc.list("pods"))
    for i in range(pods - have):
        ns = NS if i % 3 == 0 else ("batch" if i % 3 == 1 else "default")
        fc.add_pod(f"worker-{i:04d}", node=f"gpu-{i % nodes:03d}", namespace=ns, gpus=i % 2)


def status_refresh(cluster, namespace: str = NS, *, with_gpu_nodes: bool = False):
    """What the admin status view loads per refresh: ``inventory()`` (pods, nodes, events);
    ``with_gpu_nodes`` adds a separate ``gpu_nodes()`` call, as a page might."""
    from webapp.cluster import inventory as inv

    invent = inv.inventory(cluster, namespace)
    return invent, (inv.gpu_nodes(cluster, namespace) if with_gpu_nodes else list(invent.nodes))


def run_status(sizes: list[tuple[int, int]], refreshes: int, log) -> list[StatusRow]:
    """Time ``refreshes`` status refreshes per (nodes, pods) size; count API calls each."""
    from tests.fakes.k8s_server import FakeCluster
    from webapp.cluster.k8s import connect

    rows = []
    for (nodes, pods), extra in [(size, extra) for size in sizes for extra in (False, True)]:
        with FakeCluster() as fc:
            _fill(fc, nodes, pods)
            cluster = connect(fc.kubeconfig_path)
            status_refresh(cluster)  # warm-up: client models, connection pool
            seconds, calls = [], {}
            for _ in range(refreshes):
                fc.reset_counts()
                t0 = time.perf_counter()
                invent, gpus = status_refresh(cluster, with_gpu_nodes=extra)
                seconds.append(time.perf_counter() - t0)
                calls = {f"{v} {r}": c for (v, r), c in sorted(fc.request_counts.items())}
            assert len(gpus) == nodes, (len(gpus), nodes)
            view = "inventory() + gpu_nodes()" if extra else "inventory()"
            row = StatusRow(nodes, len(fc.list("pods")), seconds, calls, view)
            rows.append(row)
            log(
                f"  {view}: {nodes} nodes / {row.pods} pods ({len(invent.pods)} in {NS}): "
                f"median {row.median_s * 1000:.0f} ms, max {row.max_s * 1000:.0f} ms, "
                f"{row.total_calls} calls {calls}"
            )
    rows += run_status_page(sizes[-1], refreshes, log)
    return rows


def run_status_page(size: tuple[int, int], refreshes: int, log) -> list[StatusRow]:
    """What the admin page's status fragment loads every 5 s: ``webapp.admin.status.read_status``
    (no GKE node-pool client here). The page itself needs a verified admin (IAP/OIDC),
    which a headless run cannot present, so its widget rendering is not timed."""
    try:
        from webapp.admin.status import read_status
    except ImportError as e:
        log(f"  webapp.admin.status.read_status not available: {e}")
        return []
    from tests.fakes.k8s_server import FakeCluster
    from webapp.cluster.k8s import connect

    nodes, pods = size
    with FakeCluster() as fc:
        _fill(fc, nodes, pods)
        cluster = connect(fc.kubeconfig_path)
        read_status(cluster, NS, None)  # warm-up
        seconds, calls = [], {}
        for _ in range(refreshes):
            fc.reset_counts()
            t0 = time.perf_counter()
            status = read_status(cluster, NS, None)
            seconds.append(time.perf_counter() - t0)
            calls = {f"{v} {r}": c for (v, r), c in sorted(fc.request_counts.items())}
        ok = status.inventory is not None and len(status.inventory.nodes) == nodes
        row = StatusRow(nodes, len(fc.list("pods")), seconds, calls, "admin_service.read_status")
        log(
            f"  read_status: median {row.median_s * 1000:.0f} ms, {row.total_calls} calls "
            f"{calls}, complete: {ok}"
        )
    return [row]


@dataclass
class SwitchRow:
    """Seconds from the new pod's Ready to ``switch_model`` reporting done."""

    poll_s: float
    ready_delay_s: float
    overheads: list[float] = field(default_factory=list)
    totals: list[float] = field(default_factory=list)
    outcome: str = ""

    @property
    def median_s(self) -> float | None:
        return median(self.overheads)


def _ready_watcher(fc, model: str, out: dict) -> threading.Thread:
    def watch() -> None:
        if fc.wait_for(lambda f: model in f.served_models(NS), timeout=120):
            out["ready"] = time.monotonic()

    t = threading.Thread(target=watch, daemon=True)
    t.start()
    return t


def run_switch(poll_values: list[float], runs: int, log, ready_delay: float = 3.0):
    """In-place switches llama -> mistral -> llama …, with the default probe (fake /v1/models)."""
    from tests.fakes.k8s_server import FakeCluster
    from tests.support.cluster import LLAMA, MISTRAL, seed_vllm
    from webapp.cluster.k8s import connect
    from webapp.cluster.switch import SwitchOptions, SwitchResult, switch_model

    rows = []
    for poll_s in poll_values:
        row = SwitchRow(poll_s, ready_delay)
        with FakeCluster(gpu_nodes=[{"name": "gpu-a"}, {"name": "gpu-b"}]) as fc:
            seed_vllm(fc)
            fc.ready_delay = ready_delay  # the new pod takes a while, as vLLM loading does
            cluster = connect(fc.kubeconfig_path)
            opts = SwitchOptions(poll_s=poll_s, probe_attempts=30, lock_duration_s=60)
            for i in range(runs):
                spec = MISTRAL if i % 2 == 0 else LLAMA
                out: dict = {}
                watcher = _ready_watcher(fc, spec.name, out)
                t0 = time.monotonic()
                result = None
                for item in switch_model(
                    cluster, spec, admin="bench@example.com", namespace=NS,
                    deployment="vllm", service="vllm", model_probe=fc.model_probe, options=opts,
                ):  # fmt: skip
                    if isinstance(item, SwitchResult):
                        result = item
                done = time.monotonic()
                watcher.join(5)
                row.outcome = result.outcome if result else "no result"
                if "ready" in out:
                    row.overheads.append(done - out["ready"])
                    row.totals.append(done - t0)
                log(
                    f"  poll {poll_s} s run {i + 1}: {row.outcome}, total {done - t0:.2f} s, "
                    f"ready->done {done - out.get('ready', done):.2f} s"
                )
        rows.append(row)
    return rows
