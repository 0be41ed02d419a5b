"""The fake cluster seeded as `kubectl apply -k k8s/overlays/pools` minus the second pool: the
manifests' vLLM Deployment "vllm" and the inference-gateway component (Gateway, HTTPRoute
"llm-models", the default pool's InferencePool, endpoint picker and GKE policies), read from
k8s/ itself so the fleet code is tested against the objects we ship."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path

import yaml

from tests.fakes.k8s_server import RESOURCES, FakeCluster

ROOT = Path(__file__).resolve().parents[2]
COMPONENT = ROOT / "k8s" / "components" / "inference-gateway"
MANIFESTS = (
    ROOT / "k8s" / "base" / "vllm" / "vllm-deployment.yaml",
    COMPONENT / "gateway.yaml",
    COMPONENT / "pool-vllm.yaml",
    COMPONENT / "httproute.yaml",
)
KINDS = {kind: plural for plural, (_, _, _, kind) in RESOURCES.items()}
CATALOG = ("llama-2-7b", "mistral-7b", "qwen2-7b")
DEFAULT_MODEL = "llama-2-7b"  # what the shipped default pool serves


def seed_fleet(fc: FakeCluster, namespace: str = "vllm") -> None:
    """Create every object of ``MANIFESTS`` the fake serves (RBAC objects are left out) and
    wait until the default pool "vllm" serves llama-2-7b."""
    for path in MANIFESTS:
        for obj in yaml.safe_load_all(path.read_text()):
            if obj and obj["kind"] in KINDS:
                fc.create(KINDS[obj["kind"]], obj, namespace)
    assert fc.wait_for(lambda f: "llama-2-7b" in f.served_models(namespace), 10)


class GatewayStandIn:
    """A fake OpenAI server standing in for the inference gateway in front of ``fc``'s pools:
    it serves a model while a ready pod of ``fc`` serves it (the gateway routes to ready
    endpoints only; a pool asleep or loading gets the fake's 404), and ``GET /v1/models``
    lists the default pool's models, as behind the real gateway. Kept in step by a thread
    every ``every_s``; use as a context manager."""

    def __init__(self, fc: FakeCluster, srv, namespace: str = "vllm", every_s: float = 0.1):
        self.fc, self.srv, self.namespace, self.every_s = fc, srv, namespace, every_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="gateway-stand-in", daemon=True)
        self.served: list[str] = []

    def __enter__(self) -> GatewayStandIn:
        self.sync()
        self.srv.configure(listed_models=[DEFAULT_MODEL])
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(5)

    def sync(self) -> None:
        served = sorted(set(self.fc.served_models(self.namespace)))
        if served != self.served:
            self.srv.configure(models=served)
            self.served = served

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            self.sync()


@contextlib.contextmanager
def two_pool_gateway(tokens: list[str], namespace: str = "vllm") -> Iterator[tuple]:
    """(fake cluster, fake gateway, admin clients): the shipped pool "vllm" (llama-2-7b) and a
    pool "mistral" (mistral-7b) made by ``fleet.create_pool``, both serving, behind a
    ``GatewayStandIn`` whose answers are ``tokens``."""
    from tests.fakes.openai_server import FakeOpenAI, Script
    from webapp.cluster import fleet
    from webapp.cluster.k8s import connect
    from webapp.cluster.pools import PoolSpec

    with (
        FakeCluster(gpu_nodes=[{"name": "gpu-a"}, {"name": "gpu-b"}]) as fake,
        FakeOpenAI(model=[DEFAULT_MODEL], max_model_len=4096) as srv,
    ):
        srv.set_script(Script(tokens=tokens))
        seed_fleet(fake, namespace)
        admin = connect(fake.kubeconfig_path)
        fleet.create_pool(admin, namespace, PoolSpec("mistral", "mistral-7b"),
                          hf_repo="mistralai/Mistral-7B-v0.1", max_model_len=8192,
                          catalog_ids=CATALOG)  # fmt: skip
        assert fake.wait_for(lambda f: "mistral-7b" in f.served_models(namespace), 10)
        with GatewayStandIn(fake, srv, namespace):
            yield fake, srv, admin
