"""ModelSpec validation (every bad field named) and vLLM's exec-form arguments."""

from __future__ import annotations

from dataclasses import replace

import pytest

from tests.support.cluster import LLAMA
from webapp.cluster import model_spec as ms
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
        ({"stream_interval": 0}, "stream_interval"),
        ({"stream_interval": 65}, "stream_interval"),
        ({"stream_interval": -4}, "stream_interval"),
        ({"stream_interval": "4"}, "stream_interval"),
        ({"stream_interval": 4.0}, "stream_interval"),
        ({"stream_interval": True}, "stream_interval"),
        ({"extra_args": ("--stream-interval=8",)}, "extra_args"),
    ],
)
def test_invalid_spec_names_the_field(changes, field):
    with pytest.raises(InvalidModelSpec) as err:
        ms.validate_spec(replace(LLAMA, **changes))
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
        {"stream_interval": 1},
        {"stream_interval": 64},
    ],
)
def test_valid_specs_pass(changes):
    spec = replace(LLAMA, **changes)
    assert ms.validate_spec(spec) is spec


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
    assert ms.is_rfc1123_label(name) is ok


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
        ({}, ["--stream-interval=4"], []),
        ({"stream_interval": 1}, ["--stream-interval=1"], ["--stream-interval=4"]),
        ({"stream_interval": 16}, ["--stream-interval=16"], ["--stream-interval=4"]),
    ],
)
def test_vllm_args(changes, present, absent):
    args = ms.vllm_args(replace(LLAMA, **changes))
    assert isinstance(args, list) and all(isinstance(a, str) for a in args)
    for a in present:
        assert a in args
    for a in absent:
        assert a not in args
    assert "--port=8000" in args
