"""GPU sizing: the tutorial's rules of thumb and the verdict ladder."""

from __future__ import annotations

import pytest

from webapp.admin.sizing import (
    GPUS,
    OVERHEAD_GB_PER_GPU,
    ModelShape,
    SizingError,
    Verdict,
    gpu_type,
    kv_bytes_per_token,
    size_model,
    weights_gb,
)

# Real architecture numbers (config.json of each model).
LLAMA2_7B = ModelShape(6.74, "fp16", 32, 32, 128, 4096)
LLAMA2_13B = ModelShape(13.02, "fp16", 40, 40, 128, 4096)
MISTRAL_7B = ModelShape(7.24, "bf16", 32, 8, 128, 32768)
FALCON_7B = ModelShape(7.22, "bf16", 32, 1, 64, 2048)
LLAMA31_8B = ModelShape(8.03, "bf16", 32, 8, 128, 131072)
QWEN25_7B = ModelShape(7.62, "bf16", 28, 4, 128, 32768)
# The tutorial's round numbers: "7B", "70B".
ROUND_7B = ModelShape(7.0, "fp16", 32, 32, 128, 4096)
ROUND_70B = ModelShape(70.0, "fp16", 80, 8, 128, 4096)
ROUND_70B_AWQ = ModelShape(70.0, "awq", 80, 8, 128, 4096)
HUGE_400B = ModelShape(400.0, "fp16", 126, 8, 128, 4096)


@pytest.mark.parametrize(
    ("params_b", "precision", "expected_gb"),
    [
        (7.0, "fp16", 14.0),  # tutorial: ~2 GB per billion parameters
        (7.0, "bf16", 14.0),
        (70.0, "fp16", 140.0),  # tutorial: 70B needs ~140 GB in fp16
        (70.0, "fp8", 70.0),
        (70.0, "awq", 35.0),  # tutorial: ~35 GB at 4 bit
        (70.0, "gptq", 35.0),
    ],
)
def test_weights(params_b, precision, expected_gb):
    assert weights_gb(params_b, precision) == pytest.approx(expected_gb)


@pytest.mark.parametrize(
    ("shape", "expected_bytes"),
    [
        (LLAMA2_7B, 524_288),  # 2*32*32*128*2: 0.5 MB per token
        (LLAMA2_13B, 819_200),
        (MISTRAL_7B, 131_072),  # grouped-query: 8 KV heads
        (FALCON_7B, 8_192),  # multi-query: 1 KV head of 64
        (QWEN25_7B, 57_344),
        (ROUND_70B, 327_680),
    ],
)
def test_kv_bytes_per_token(shape, expected_bytes):
    assert kv_bytes_per_token(shape) == expected_bytes


@pytest.mark.parametrize(
    ("case", "shape", "gpu", "count", "kwargs", "label", "tp", "within", "tp_needed"),
    [
        ("7B fp16 on one L4", ROUND_7B, "nvidia-l4", 1, {}, "FITS", 1, True, 1),
        ("Llama-2-7b on one L4", LLAMA2_7B, "nvidia-l4", 1, {}, "FITS", 1, True, 1),
        ("falcon on an L4", FALCON_7B, "nvidia-l4", 1, {}, "FITS", 1, True, 1),
        # 14.4 GB of bf16 weights + overhead exceed 90 % of 16 GB; T4 has no fp8
        (
            "falcon on a T4",
            FALCON_7B,
            "nvidia-tesla-t4",
            1,
            {},
            "NEEDS_QUANTIZATION(awq)",
            1,
            True,
            2,
        ),
        (
            "13B fp16 on one L4: fp8 or TP 2",
            LLAMA2_13B,
            "nvidia-l4",
            1,
            {},
            "NEEDS_QUANTIZATION(fp8)",
            1,
            True,
            2,
        ),
        (
            "13B fp16 on two L4",
            LLAMA2_13B,
            "nvidia-l4",
            2,
            {},
            "NEEDS_TENSOR_PARALLEL(2)",
            2,
            True,
            2,
        ),
        ("13B fp16 on A100 40", LLAMA2_13B, "nvidia-tesla-a100", 1, {}, "FITS", 1, True, 1),
        (
            "70B fp16 on 2xL4 needs 4-bit",
            ROUND_70B,
            "nvidia-l4",
            2,
            {},
            "NEEDS_QUANTIZATION(awq)",
            2,
            True,
            8,
        ),
        (
            "70B 4-bit on 2xL4 fits with TP 2",
            ROUND_70B_AWQ,
            "nvidia-l4",
            2,
            {},
            "NEEDS_TENSOR_PARALLEL(2)",
            2,
            True,
            2,
        ),
        (
            "70B 4-bit on one L4: more GPUs",
            ROUND_70B_AWQ,
            "nvidia-l4",
            1,
            {},
            "NEEDS_TENSOR_PARALLEL(2)",
            2,
            False,
            2,
        ),
        (
            "70B fp16 on 2xH100: fp8 in budget",
            ROUND_70B,
            "nvidia-h100-80gb",
            2,
            {},
            "NEEDS_QUANTIZATION(fp8)",
            2,
            True,
            4,
        ),
        (
            "70B fp16 on one T4: no fp8 on T4, 4-bit on 4",
            ROUND_70B,
            "nvidia-tesla-t4",
            1,
            {},
            "NEEDS_QUANTIZATION(awq)",
            4,
            False,
            None,
        ),
        (
            "Llama-3.1-8B at full 128k context on one L4",
            LLAMA31_8B,
            "nvidia-l4",
            1,
            {},
            "NEEDS_TENSOR_PARALLEL(2)",
            2,
            False,
            2,
        ),
        (
            "Llama-3.1-8B at 16k on one L4",
            LLAMA31_8B,
            "nvidia-l4",
            1,
            {"max_model_len": 16384},
            "FITS",
            1,
            True,
            1,
        ),
        (
            "Llama-2-7b x4 concurrent full context on one L4",
            LLAMA2_7B,
            "nvidia-l4",
            1,
            {"concurrency": 4},
            "NEEDS_QUANTIZATION(fp8)",
            1,
            True,
            2,
        ),
        (
            "fp8 KV cache makes the same load fit",
            LLAMA2_7B,
            "nvidia-l4",
            1,
            {"concurrency": 4, "kv_cache_dtype": "fp8"},
            "FITS",
            1,
            True,
            1,
        ),
        ("400B on T4s", HUGE_400B, "nvidia-tesla-t4", 4, {}, "DOES_NOT_FIT", 4, False, None),
    ],
)
def test_verdicts(case, shape, gpu, count, kwargs, label, tp, within, tp_needed):
    r = size_model(shape, gpu, count, **kwargs)
    assert r.label == label, (case, r.explanation)
    assert r.tensor_parallel == tp
    assert r.within_budget is within
    assert r.tensor_parallel_needed == tp_needed
    assert r.explanation  # one line for the page
    assert "\n" not in r.explanation


def test_tutorial_7b_on_l4_leaves_about_10_gb():
    r = size_model(ROUND_7B, "nvidia-l4")
    assert r.weights_gb == pytest.approx(14.0)
    assert r.headroom_after_weights_gb == pytest.approx(10.0)
    # vLLM only takes 90 %: 21.6 GB, minus weights and overhead, is the KV budget.
    assert r.capacity_gb == pytest.approx(21.6)
    assert r.required_gb == pytest.approx(14.0 + r.kv_cache_gb + OVERHEAD_GB_PER_GPU)
    assert r.verdict is Verdict.FITS


def test_tutorial_70b_numbers():
    fp16 = size_model(ROUND_70B, "nvidia-l4", 2)
    assert fp16.quantization == "awq"
    assert fp16.weights_gb == pytest.approx(35.0)  # the suggestion's numbers
    assert fp16.capacity_gb == pytest.approx(43.2)
    assert fp16.required_gb <= fp16.capacity_gb
    assert "awq" in fp16.explanation


def test_does_not_fit_reports_requested_numbers():
    r = size_model(HUGE_400B, "nvidia-tesla-t4", 4)
    assert r.verdict is Verdict.DOES_NOT_FIT
    assert r.weights_gb == pytest.approx(800.0)
    assert r.required_gb > r.capacity_gb
    assert r.max_context_fits == 0
    assert r.quantization is None


@pytest.mark.parametrize(
    ("shape", "gpu", "kwargs", "low", "high"),
    [
        # (21.6 - 16.06 - 1.5) GB / 131072 B per token = ~30.8k tokens
        (LLAMA31_8B, "nvidia-l4", {"max_model_len": 8192}, 30_000, 31_500),
        # capped by the model's own maximum
        (LLAMA2_7B, "nvidia-l4", {}, 4096, 4096),
        # two sequences share the room
        (LLAMA31_8B, "nvidia-l4", {"max_model_len": 8192, "concurrency": 2}, 15_000, 15_750),
    ],
)
def test_max_context_fits(shape, gpu, kwargs, low, high):
    r = size_model(shape, gpu, **kwargs)
    assert low <= r.max_context_fits <= high
    if r.max_context_fits < shape.max_context:
        # at the reported maximum the KV cache fills the budget exactly (within one token)
        free = r.capacity_gb - r.weights_gb - r.overhead_gb
        used = r.max_context_fits * r.concurrency * r.kv_bytes_per_token / 1e9
        assert used <= free < used + r.concurrency * r.kv_bytes_per_token / 1e9


@pytest.mark.parametrize(
    ("accelerator", "memory_gb"),
    [
        ("nvidia-tesla-t4", 16),
        ("nvidia-l4", 24),
        ("nvidia-tesla-a100", 40),
        ("nvidia-a100-80gb", 80),
        ("nvidia-h100-80gb", 80),
    ],
)
def test_gpu_table(accelerator, memory_gb):
    assert gpu_type(accelerator).memory_gb == memory_gb
    assert GPUS[accelerator].accelerator == accelerator


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: size_model(ROUND_7B, "nvidia-k80"), "unknown GPU"),
        (lambda: size_model(ROUND_7B, "nvidia-l4", 0), "gpu_count"),
        (lambda: size_model(ROUND_7B, "nvidia-l4", concurrency=0), "concurrency"),
        (lambda: size_model(ROUND_7B, "nvidia-l4", gpu_memory_utilization=1.5), "utilization"),
        (lambda: size_model(ROUND_7B, "nvidia-l4", max_model_len=8192), "exceeds"),
        (lambda: size_model(ROUND_7B, "nvidia-l4", max_model_len=0), "at least 1"),
        (lambda: size_model(ROUND_7B, "nvidia-l4", kv_cache_dtype="int3"), "kv_cache_dtype"),
        (lambda: weights_gb(7, "int3"), "unknown precision"),
    ],
)
def test_bad_input_is_a_sizing_error(call, message):
    with pytest.raises(SizingError, match=message):
        call()


def test_lower_utilization_shrinks_capacity():
    a = size_model(LLAMA2_7B, "nvidia-l4", gpu_memory_utilization=0.9)
    b = size_model(LLAMA2_7B, "nvidia-l4", gpu_memory_utilization=0.5)
    assert b.capacity_gb == pytest.approx(12.0)
    assert b.verdict is not Verdict.FITS
    assert a.verdict is Verdict.FITS
