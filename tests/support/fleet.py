"""The fake cluster seeded as `kubectl apply -k k8s/overlays/pools` minus the second pool: the
manifests' vLLM Deployment "vllm" and the inference-gateway component (Gateway, HTTPRoute
"llm-models", the default pool's InferencePool, endpoint picker and GKE policies), read from
k8s/ itself so the fleet code is tested against the objects we ship."""

from __future__ import annotations

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


def seed_fleet(fc: FakeCluster, namespace: str = "vllm") -> None:
    """Create every object of ``MANIFESTS`` the fake serves (RBAC objects are left out) and
    wait until the default pool "vllm" serves llama-2-7b."""
    for path in MANIFESTS:
        for obj in yaml.safe_load_all(path.read_text()):
            if obj and obj["kind"] in KINDS:
                fc.create(KINDS[obj["kind"]], obj, namespace)
    assert fc.wait_for(lambda f: "llama-2-7b" in f.served_models(namespace), 10)
