"""The served-model headline of the admin status: table-driven over pods and /v1/models."""

from __future__ import annotations

from dataclasses import replace

import pytest

from webapp.admin.serving import gpu_name, human_duration, serving
from webapp.cluster.inventory import PodInfo

POD = PodInfo(
    name="vllm-1", namespace="vllm", phase="Running", ready=True, restarts=0, node="gpu-a",
    age_s=11_000, reason="", message="", model="llama-2-7b", ip="10.0.0.5",
    hf_repo="meta-llama/Llama-2-7b-hf", gpus=1, accelerator="nvidia-l4", ready_for_s=10_800,
)  # fmt: skip
STARTING = replace(
    POD, name="vllm-2", model="mistral-7b", hf_repo="mistralai/Mistral-7B-v0.1", ready=False,
    phase="Pending", reason="Unschedulable", ready_for_s=None,
)  # fmt: skip
WEBAPP = replace(POD, name="webapp-1", model="", hf_repo="", gpus=0, accelerator="")
LLAMA = "Serving llama-2-7b (meta-llama/Llama-2-7b-hf) on 1 × L4, since 3 h"


@pytest.mark.parametrize(
    ("pods", "listed", "level", "text"),
    [
        ([POD], ["llama-2-7b"], "ok", LLAMA + "."),
        ([POD, WEBAPP], ["llama-2-7b"], "ok", LLAMA + "."),
        ([POD], None, "warning", LLAMA + ". The chat endpoint does not answer right now."),
        ([POD], ["qwen"], "warning", LLAMA + ". But the chat endpoint lists qwen."),
        ([POD], [], "warning", LLAMA + ". But the chat endpoint lists no model."),
        (
            [POD, replace(POD, name="vllm-3", ready_for_s=60)],
            ["llama-2-7b"],
            "ok",
            "Serving llama-2-7b (meta-llama/Llama-2-7b-hf) on 2 replicas of 1 × L4, since 3 h.",
        ),
        (
            [replace(POD, gpus=4, accelerator="nvidia-h100-80gb", hf_repo="llama-2-7b")],
            ["llama-2-7b"],
            "ok",
            "Serving llama-2-7b on 4 × H100, since 3 h.",
        ),
        ([replace(POD, gpus=0, accelerator="")], ["llama-2-7b"], "ok", "Serving llama-2-7b (meta-llama/Llama-2-7b-hf) on CPU, since 3 h."),
        # a switch in progress: the old pod still serves, the new one waits for a node
        ([POD, STARTING], ["llama-2-7b"], "ok", LLAMA + "."),
        ([STARTING], None, "warning", "Not serving yet: mistral-7b is starting (Unschedulable)."),
        (
            [STARTING],
            ["llama-2-7b"],
            "warning",
            "Not serving yet: mistral-7b is starting (Unschedulable). The chat endpoint serves "
            "llama-2-7b (no vLLM pod is ready in namespace vllm).",
        ),
        (
            [],
            ["llama-2-7b"],
            "ok",
            "The chat endpoint serves llama-2-7b (no vLLM pod runs in namespace vllm).",
        ),
        ([WEBAPP], None, "idle", "No model is served: no vLLM pod runs in namespace vllm."),
        (None, None, "idle", "No model is known to be served: the cluster cannot be read."),
        ([replace(POD, phase="Failed", ready=False)], None, "idle",
         "No model is served: no vLLM pod runs in namespace vllm."),
    ],
)  # fmt: skip
def test_serving_headline(pods, listed, level, text):
    line = serving(pods, listed, namespace="vllm")
    assert (line.level, line.text) == (level, text)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0 s"), (59, "59 s"), (60, "1 min"), (7199, "119 min"), (7200, "2 h"),
     (172_799, "47 h"), (172_800, "2 d"), (-5, "0 s")],
)  # fmt: skip
def test_human_duration(seconds, text):
    assert human_duration(seconds) == text


@pytest.mark.parametrize(
    ("accelerator", "name"),
    [("nvidia-l4", "L4"), ("nvidia-tesla-t4", "T4"), ("nvidia-h100-80gb", "H100"),
     ("nvidia-tesla-a100", "A100 40 GB"), ("nvidia-a100-80gb", "A100 80 GB"),
     ("nvidia-b200", "nvidia-b200"), ("", "GPU")],
)  # fmt: skip
def test_gpu_name(accelerator, name):
    assert gpu_name(accelerator) == name
