"""Pure builders: the vLLM pod template and container, and reading the model back."""

from __future__ import annotations

from dataclasses import replace

import pytest

from tests.support.cluster import LLAMA
from webapp.cluster import manifests as mf


@pytest.mark.parametrize("tp", [1, 2, 4, 8])
def test_pod_template_essentials(tp):
    spec = replace(LLAMA, tensor_parallel_size=tp, gpu_type="nvidia-tesla-t4")
    t = mf.build_pod_template(spec, labels={"app": "vllm"})
    pod = t["spec"]
    c = pod["containers"][0]
    assert t["metadata"]["labels"] == {"app": "vllm"}
    assert t["metadata"]["annotations"][mf.MODEL_ANNOTATION] == "llama-2-7b"
    assert pod["enableServiceLinks"] is False
    assert pod["nodeSelector"] == {mf.ACCELERATOR_LABEL: "nvidia-tesla-t4"}
    assert c["resources"]["limits"][mf.GPU_RESOURCE] == str(tp)
    assert c["resources"]["requests"][mf.GPU_RESOURCE] == str(tp)
    assert c["command"] == mf.VLLM_COMMAND and isinstance(c["args"], list)
    env = {e["name"]: e for e in c["env"]}
    assert env["HF_TOKEN"]["valueFrom"]["secretKeyRef"] == {
        "name": "huggingface",
        "key": "HF_TOKEN",
    }
    assert {"name": "dshm", "mountPath": "/dev/shm"} in c["volumeMounts"]
    assert {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "2Gi"}} in pod["volumes"]
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        assert c[probe]["httpGet"] == {"path": "/health", "port": 8000}


def test_template_keeps_unrelated_settings_of_the_base():
    base = mf.build_pod_template(LLAMA, labels={"app": "vllm"}, image="my/vllm:1")
    base["spec"]["serviceAccountName"] = "vllm"
    base["spec"]["containers"][0]["env"].append({"name": "VLLM_LOGGING_LEVEL", "value": "DEBUG"})
    base["spec"]["containers"][0]["resources"]["limits"]["memory"] = "40Gi"
    new = mf.build_pod_template(
        replace(LLAMA, name="other", tensor_parallel_size=2),
        labels={"app": "vllm"},
        base_template=base,
    )
    c = new["spec"]["containers"][0]
    assert new["spec"]["serviceAccountName"] == "vllm"
    assert c["image"] == "my/vllm:1"
    assert {"name": "VLLM_LOGGING_LEVEL", "value": "DEBUG"} in c["env"]
    assert [e["name"] for e in c["env"]].count("HF_TOKEN") == 1
    assert c["resources"]["limits"] == {"memory": "40Gi", mf.GPU_RESOURCE: "2"}
    assert len(new["spec"]["volumes"]) == 1
    assert mf.template_model(new) == "other"


def _template(args, command=None, annotations=None):
    container = {"name": "vllm", "args": args}
    if command is not None:
        container["command"] = command
    return {
        "metadata": {"annotations": annotations or {}},
        "spec": {"containers": [{"name": "sidecar", "args": ["--verbose"]}, container]},
    }


REPO = "meta-llama/Llama-2-7b-hf"


@pytest.mark.parametrize(
    ("template", "served", "repo"),
    [
        # the base manifest's order: --model first, then the served name (issue 9.2)
        (_template([f"--model={REPO}", "--served-model-name=llama-2-7b"]), "llama-2-7b", REPO),
        (_template(["--served-model-name=llama-2-7b", f"--model={REPO}"]), "llama-2-7b", REPO),
        (_template(["--model", REPO, "--served-model-name", "llama-2-7b"]), "llama-2-7b", REPO),
        # vLLM serves under the repo name when no served name is given
        (_template([f"--model={REPO}"]), REPO, REPO),
        # the args in the command (a shell-less command list) count too
        (_template([], command=["vllm", "serve", f"--model={REPO}"]), REPO, REPO),
        # the args say what runs; a stale annotation does not win
        (_template([f"--model={REPO}"], annotations={mf.MODEL_ANNOTATION: "old"}), REPO, REPO),
        # no vLLM flags: the annotation, else nothing
        (_template([], annotations={mf.MODEL_ANNOTATION: "llama-2-7b"}), "llama-2-7b", None),
        (_template([]), None, None),
        ({}, None, None),
        (_template(["--served-model-name="]), None, None),
    ],
)
def test_template_model_prefers_the_served_name(template, served, repo):
    assert mf.template_model(template) == served
    assert mf.template_hf_repo(template) == repo
