"""The fake world the admin console is tested against, shared by its tests.

* ``fake_gke()`` — a fake GKE API holding cluster ``llm-cluster`` with its CPU default pool
  and the tutorial's spot L4 GPU pool (autoscaling 0..2); ``gke_settings`` points the
  console's settings at it.
* ``admin_world()`` — that, plus a fake Kubernetes API serving llama-2-7b on two one-GPU
  L4 nodes and the fake vLLM endpoint in front of it (kept in step by
  ``ServedModelSync``). The AppTest page tests and the browser tests both run in it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import yaml

from tests.fakes.gke_server import FakeGke, FakeGkeServer, default_pool, gpu_pool
from tests.fakes.k8s_server import FakeCluster
from tests.fakes.openai_server import FakeOpenAI
from tests.support.cluster import LLAMA, NS, seed_vllm
from webapp.cluster.manifests import build_service
from webapp.cluster.patches import idle_slot
from webapp.settings import Settings

PROJECT, LOCATION, CLUSTER = "demo-project", "us-central1", "llm-cluster"
#: the demo region's Compute Engine quotas: metric -> (limit, usage)
DEMO_QUOTAS = {"CPUS": (72, 12), "NVIDIA_L4_GPUS": (8, 0), "PREEMPTIBLE_NVIDIA_L4_GPUS": (16, 1)}
BASE_MANIFEST = (
    Path(__file__).resolve().parents[2] / "k8s" / "base" / "vllm" / "vllm-deployment.yaml"
)


def base_manifest_deployment(*, annotated: bool = True) -> dict:
    """The vLLM Deployment as ``kubectl apply -k k8s/base`` creates it (``annotated=False``:
    as manifests without the ``llm-console/model`` annotation did, e.g. a hand-written one)."""
    dep = yaml.safe_load(BASE_MANIFEST.read_text())
    dep["metadata"]["namespace"] = NS
    if not annotated:
        dep["spec"]["template"]["metadata"].pop("annotations", None)
    return dep


def seed_from_manifest(fc: FakeCluster, *, annotated: bool = True) -> None:
    """Create the base manifest's Deployment, its stopped blue/green slot ``vllm-green`` (as
    k8s/base/vllm-green ships it) and a Service on its labels; wait until ready."""
    dep = base_manifest_deployment(annotated=annotated)
    fc.create("deployments", dep)
    fc.create("deployments", idle_slot(dep, "vllm"))
    selector = dep["spec"]["selector"]["matchLabels"]
    fc.create("services", build_service("vllm", NS, selector))
    assert fc.wait_for(lambda f: f.served_models(NS) == ["llama-2-7b"], 10)


@contextmanager
def fake_gke() -> Iterator[FakeGkeServer]:
    """A fake GKE API serving the demo cluster (default pool + GPU pool) and its region's
    quotas (``DEMO_QUOTAS``); ``.fake`` is its state."""
    gke = FakeGke()
    gke.add_cluster(PROJECT, LOCATION, CLUSTER, default_pool(), gpu_pool(autoscaling=(0, 2)))
    gke.add_region(PROJECT, LOCATION, DEMO_QUOTAS)
    with FakeGkeServer(gke) as server:
        yield server


def gke_settings(server: FakeGkeServer) -> Settings:
    """Settings naming the demo cluster, with the GKE API at ``server``."""
    return Settings(
        gke_project=PROJECT,
        gke_location=LOCATION,
        gke_cluster=CLUSTER,
        gke_api_endpoint=server.endpoint,
        compute_api_endpoint=server.endpoint,
    )


class ServedModelSync:
    """Makes the fake vLLM endpoint serve what the fake cluster's ready pods serve.

    In a real cluster the Service at LLM_URL reaches the vLLM pod; here a thread plays
    that part, so the page's confirmation through /v1/models sees the switched model.
    """

    def __init__(self, fc: FakeCluster, llm: FakeOpenAI) -> None:
        self.fc, self.llm = fc, llm
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        last = None
        while not self._stop.is_set():
            served = self.fc.served_models(NS)
            if served and served != last:
                self.llm.configure(models=served)
                last = served
            self._stop.wait(0.02)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(5)


@dataclass(frozen=True)
class AdminWorld:
    """The running fakes: Kubernetes (``fc``), vLLM (``llm``), GKE (``gke`` behind ``gke_srv``)."""

    fc: FakeCluster
    llm: FakeOpenAI
    gke: FakeGke
    gke_srv: FakeGkeServer

    def env(self) -> dict[str, str]:
        """The environment that points the app at this world."""
        return {
            "KUBECONFIG": self.fc.kubeconfig_path,
            "K8S_NAMESPACE": NS,
            "LLM_URL": self.llm.url,
            "GKE_PROJECT": PROJECT,
            "GKE_LOCATION": LOCATION,
            "GKE_CLUSTER": CLUSTER,
            "GKE_API_ENDPOINT": self.gke_srv.endpoint,
        }


@contextmanager
def admin_world(seed=seed_vllm) -> Iterator[AdminWorld]:
    """Fake cluster serving llama-2-7b on 2 one-GPU L4 nodes (``seed`` deploys it) and a CPU
    node of the default pool, its vLLM endpoint, GKE."""
    with (
        FakeCluster(gpu_nodes=[{"name": "gpu-a"}, {"name": "gpu-b"}]) as fc,
        FakeOpenAI(model=LLAMA.name) as llm,
        fake_gke() as gke_srv,
    ):
        fc.add_node("cpu-a", gpus=0, pool="default-pool", spot=False)
        seed(fc)
        with ServedModelSync(fc, llm):
            yield AdminWorld(fc, llm, gke_srv.fake, gke_srv)
