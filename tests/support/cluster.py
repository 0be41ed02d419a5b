"""The fake cluster's seed: the models tests switch between and a vLLM Deployment + Service.

``seed_vllm`` creates what the manifests ship (``vllm``, its stopped blue/green slot
``vllm-green`` and the Service) in a ``FakeCluster``; ``FAST`` polls a switch quickly.
"""

from __future__ import annotations

from tests.fakes.k8s_server import FakeCluster
from webapp.cluster.manifests import build_deployment, build_service
from webapp.cluster.model_spec import ModelSpec
from webapp.cluster.patches import idle_slot
from webapp.cluster.switch import SwitchOptions

NS = "vllm"
LLAMA = ModelSpec(name="llama-2-7b", hf_repo="meta-llama/Llama-2-7b-hf", max_model_len=4096)
MISTRAL = ModelSpec(
    name="mistral-7b-instruct", hf_repo="mistralai/Mistral-7B-Instruct-v0.2", max_model_len=8192
)
QWEN = ModelSpec(name="qwen2-7b", hf_repo="Qwen/Qwen2-7B-Instruct", max_model_len=8192)
FAST = SwitchOptions(poll_s=0.03, probe_attempts=3, lock_duration_s=60)


def seed_vllm(
    fc: FakeCluster, spec: ModelSpec = LLAMA, *, deadline_s: int = 1800, green: bool = True
) -> None:
    """Create Deployment + Service ``vllm`` serving ``spec`` and wait until it is ready; with
    ``green``, also the stopped blue/green slot ``vllm-green``, as the manifests ship it (the
    console never creates a Deployment)."""
    dep = build_deployment("vllm", NS, spec, progress_deadline_s=deadline_s)
    fc.create("deployments", dep)
    if green:
        fc.create("deployments", idle_slot(dep, "vllm"))
    fc.create("services", build_service("vllm", NS, {"app": "vllm"}))
    assert fc.wait_for(lambda f: f.served_models(NS) == [spec.name], 10)
