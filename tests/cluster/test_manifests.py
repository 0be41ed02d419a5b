"""Pure builders: validation, vLLM arguments, pod template and patches."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from tests.cluster.conftest import LLAMA
from webapp.cluster import manifests as mf
from webapp.cluster.errors import InvalidModelSpec


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"name": ""}, "name"),
        ({"name": "a b"}, "name"),
        ({"name": "x; rm -rf /"}, "name"),
        ({"hf_repo": "meta-llama/Llama 2"}, "hf_repo"),
        ({"hf_repo": "../etc/passwd"}, "hf_repo"),
        ({"hf_repo": "a/b/c"}, "hf_repo"),
        ({"revision": "$(reboot)"}, "revision"),
        ({"revision": "main/../x"}, "revision"),
        ({"max_model_len": 0}, "max_model_len"),
        ({"max_model_len": "4096"}, "max_model_len"),
        ({"max_model_len": True}, "max_model_len"),
        ({"tensor_parallel_size": 3}, "tensor_parallel_size"),
        ({"tensor_parallel_size": 0}, "tensor_parallel_size"),
        ({"gpu_type": "NVIDIA L4"}, "gpu_type"),
        ({"gpu_type": "-nvidia-l4"}, "gpu_type"),
        ({"gpu_memory_utilization": 1.5}, "gpu_memory_utilization"),
        ({"gpu_memory_utilization": float("nan")}, "gpu_memory_utilization"),
        ({"dtype": "int3"}, "dtype"),
        ({"quantization": "magic"}, "quantization"),
        ({"trust_remote_code": "yes"}, "trust_remote_code"),
        ({"extra_args": ("--enable-prefix-caching x",)}, "extra_args"),
        ({"extra_args": ("; curl evil",)}, "extra_args"),
        ({"extra_args": ("--trust-remote-code",)}, "extra_args"),
        ({"extra_args": ("--model=other/model",)}, "extra_args"),
        ({"image": "vllm/vllm-openai:latest && sh"}, "image"),
    ],
)
def test_invalid_spec_names_the_field(changes, field):
    with pytest.raises(InvalidModelSpec) as err:
        mf.validate_spec(replace(LLAMA, **changes))
    assert err.value.field == field
    assert err.value.reason


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"hf_repo": "gpt2"},
        {"name": "meta-llama/Llama-2-7b-chat-hf", "revision": "a" * 40},
        {"tensor_parallel_size": 2, "quantization": "awq", "dtype": "half"},
        {"extra_args": ("--enable-prefix-caching", "--max-num-seqs=64")},
        {"trust_remote_code": True},
    ],
)
def test_valid_specs_pass(changes):
    spec = replace(LLAMA, **changes)
    assert mf.validate_spec(spec) is spec


@pytest.mark.parametrize(
    ("name", "ok"),
    [
        ("vllm", True),
        ("vllm-green", True),
        ("a" * 63, True),
        ("a" * 64, False),
        ("VLLM", False),
        ("-vllm", False),
        ("vllm-", False),
        ("vl_lm", False),
        ("", False),
    ],
)
def test_rfc1123_names(name, ok):
    assert mf.is_rfc1123_label(name) is ok


@pytest.mark.parametrize(
    ("changes", "present", "absent"),
    [
        (
            {},
            ["--model=meta-llama/Llama-2-7b-hf", "--served-model-name=llama-2-7b"],
            ["--trust-remote-code"],
        ),
        ({"trust_remote_code": True}, ["--trust-remote-code"], []),
        ({"quantization": "gptq"}, ["--quantization=gptq"], []),
        ({"tensor_parallel_size": 4}, ["--tensor-parallel-size=4"], []),
        ({"max_model_len": 2048}, ["--max-model-len=2048"], []),
        ({"gpu_memory_utilization": 0.85}, ["--gpu-memory-utilization=0.85"], []),
        ({"extra_args": ("--enforce-eager",)}, ["--enforce-eager"], []),
    ],
)
def test_vllm_args(changes, present, absent):
    args = mf.vllm_args(replace(LLAMA, **changes))
    assert isinstance(args, list) and all(isinstance(a, str) for a in args)
    for a in present:
        assert a in args
    for a in absent:
        assert a not in args
    assert "--port=8000" in args


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


def test_in_place_patch_stores_previous_template_and_preconditions():
    dep = mf.build_deployment("vllm", "vllm", LLAMA)
    dep["metadata"]["resourceVersion"] = "42"
    new_t = mf.build_pod_template(replace(LLAMA, name="m2"), labels={"app": "vllm"})
    ops = mf.in_place_patch(dep, new_t)
    by_path = {op["path"]: op for op in ops}
    assert by_path["/metadata/resourceVersion"]["value"] == "42"
    saved = by_path["/metadata/annotations"]["value"][mf.PREVIOUS_TEMPLATE_ANNOTATION]
    assert json.loads(saved) == dep["spec"]["template"]
    assert by_path["/spec/template"]["value"] == new_t
    assert by_path["/spec/strategy"]["value"] == {"type": "Recreate"}
    dep["metadata"]["annotations"] = by_path["/metadata/annotations"]["value"]
    assert mf.previous_template(dep) == dep["spec"]["template"]


@pytest.mark.parametrize(
    ("annotations", "expected_none"),
    [
        ({}, True),
        ({mf.PREVIOUS_TEMPLATE_ANNOTATION: "{not json"}, True),
        ({mf.PREVIOUS_TEMPLATE_ANNOTATION: "[]"}, True),
    ],
)
def test_previous_template_absent_or_broken(annotations, expected_none):
    dep = {"metadata": {"annotations": annotations}}
    assert (mf.previous_template(dep) is None) is expected_none


@pytest.mark.parametrize(
    ("base", "active", "target", "sel", "expected"),
    [
        ("vllm", "vllm", "vllm-green", {"app": "vllm"}, {"app": "vllm-green"}),
        ("vllm", "vllm-green", "vllm", {"app": "vllm-green"}, {"app": "vllm"}),
    ],
)
def test_slots_alternate_with_disjoint_selectors(base, active, target, sel, expected):
    assert mf.other_slot_name(base, active) == target
    assert mf.slot_labels(sel, active, target, base) == expected


@pytest.mark.parametrize(
    ("active_name", "idle_name"), [("vllm", "vllm-green"), ("vllm-green", "vllm")]
)
def test_idle_slot_is_the_other_slot_stopped_with_its_own_selector(active_name, idle_name):
    labels = {"app": active_name}
    active = mf.build_deployment(active_name, "vllm", LLAMA, labels=labels)
    idle = mf.idle_slot(active, "vllm")
    assert idle["metadata"] == {
        "name": idle_name,
        "namespace": "vllm",
        "labels": {"app": idle_name},
    }
    assert idle["spec"]["replicas"] == 0
    assert idle["spec"]["selector"] == {"matchLabels": {"app": idle_name}}
    assert idle["spec"]["template"]["metadata"]["labels"] == {"app": idle_name}
    assert idle["spec"]["strategy"] == {"type": "Recreate"}
    # the same model and pod as the active slot, nothing else changed
    assert mf.template_model(idle["spec"]["template"]) == LLAMA.name
    assert idle["spec"]["template"]["spec"] == active["spec"]["template"]["spec"]
    assert active["spec"]["selector"] == {"matchLabels": labels}  # not modified


MISTRAL_LIKE = replace(LLAMA, name="mistral")


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
