"""GPU memory sizing for a model served by vLLM (pure arithmetic, no I/O).

The question an admin asks before switching models: "does this model fit on
the GPU pool?" The answer follows the tutorial's rule of thumb, made explicit:

    weights  = parameters x bytes per parameter   (fp16/bf16 2, fp8 1, int4 0.5)
    KV cache = 2 (K and V) x layers x kv_heads x head_dim x bytes per KV element
               x tokens                              (tokens = max_model_len x concurrency)
    overhead = OVERHEAD_GB_PER_GPU per GPU           (activations, CUDA graphs, allocator)
    capacity = GPU memory x GPU count x gpu_memory_utilization (vLLM default 0.9)

All memory figures are decimal gigabytes (1 GB = 1e9 bytes), as GPU data sheets
state them. The result is an estimate: quantized checkpoints carry scales and
unquantized embeddings, so real AWQ/GPTQ files are ~10 % larger than params/2.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

GB = 1e9

#: Memory per GPU that is neither weights nor KV cache: the activation peak vLLM
#: measures in its profiling run plus CUDA graph capture. 1.5 GB is typical for
#: 7B-70B models at vLLM's default max_num_batched_tokens.
OVERHEAD_GB_PER_GPU = 1.5

#: vLLM's default --gpu-memory-utilization.
DEFAULT_GPU_MEMORY_UTILIZATION = 0.9

#: Bytes per weight for each precision / quantization method we know.
BYTES_PER_PARAM: dict[str, float] = {
    "fp32": 4.0,
    "fp16": 2.0,
    "bf16": 2.0,
    "fp8": 1.0,
    "awq": 0.5,
    "gptq": 0.5,
}

#: Quantizations we suggest, lightest quality loss first.
_QUANTIZATION_LADDER = ("fp8", "awq")

#: Tensor-parallel sizes vLLM users run (powers of two; one node).
_TP_SIZES = (1, 2, 4, 8, 16)


class SizingError(ValueError):
    """Bad input to a sizing computation (unknown GPU, precision, negative numbers)."""


@dataclass(frozen=True)
class GpuType:
    """A GPU model as GKE offers it."""

    accelerator: str  # the GKE label value, cloud.google.com/gke-accelerator
    display_name: str
    memory_gb: float
    max_per_node: int  # largest machine shape on GKE with this GPU
    supports_fp8: bool  # vLLM fp8 weights need compute capability >= 8.0 (Marlin)


GPUS: dict[str, GpuType] = {
    g.accelerator: g
    for g in (
        GpuType("nvidia-tesla-t4", "NVIDIA T4 16 GB", 16.0, 4, False),
        GpuType("nvidia-l4", "NVIDIA L4 24 GB", 24.0, 8, True),
        GpuType("nvidia-tesla-a100", "NVIDIA A100 40 GB", 40.0, 16, True),
        GpuType("nvidia-a100-80gb", "NVIDIA A100 80 GB", 80.0, 8, True),
        GpuType("nvidia-h100-80gb", "NVIDIA H100 80 GB", 80.0, 8, True),
    )
}


def gpu_type(accelerator: str) -> GpuType:
    """The GPU for a GKE accelerator label (e.g. ``nvidia-l4``); raises SizingError if unknown."""
    try:
        return GPUS[accelerator]
    except KeyError:
        known = ", ".join(GPUS)
        raise SizingError(f"unknown GPU type {accelerator!r}; known: {known}") from None


@dataclass(frozen=True)
class ModelShape:
    """The numbers of a model that decide its memory footprint."""

    params_b: float  # parameters, in billions
    precision: str  # key of BYTES_PER_PARAM: fp16, bf16, fp8, awq, gptq
    num_layers: int
    num_kv_heads: int
    head_dim: int
    max_context: int  # the model's own maximum (max_position_embeddings)


class Verdict(StrEnum):
    """Outcome of a sizing check."""

    FITS = "FITS"
    NEEDS_TENSOR_PARALLEL = "NEEDS_TENSOR_PARALLEL"
    NEEDS_QUANTIZATION = "NEEDS_QUANTIZATION"
    DOES_NOT_FIT = "DOES_NOT_FIT"


@dataclass(frozen=True)
class SizingResult:
    """Verdict plus every number behind it, for the suggested configuration.

    ``tensor_parallel`` and ``precision`` describe the configuration the numbers
    refer to (the suggestion, or the request itself when nothing fits).
    ``within_budget`` tells whether that configuration uses at most the GPUs asked for.
    """

    verdict: Verdict
    gpu: GpuType
    gpus_requested: int
    tensor_parallel: int
    precision: str
    quantization: str | None  # quantization to apply, None = keep the model's precision
    within_budget: bool
    weights_gb: float
    kv_bytes_per_token: int
    kv_cache_gb: float
    overhead_gb: float
    required_gb: float
    capacity_gb: float
    headroom_after_weights_gb: float  # raw GPU memory minus weights (the tutorial's figure)
    max_model_len: int
    concurrency: int
    max_context_fits: int  # longest max_model_len that fits at this concurrency, capped
    tensor_parallel_needed: int | None  # fewest GPUs of this type at the model's precision
    explanation: str

    @property
    def label(self) -> str:
        """Verdict with its argument, e.g. ``NEEDS_TENSOR_PARALLEL(2)``."""
        if self.verdict is Verdict.NEEDS_TENSOR_PARALLEL:
            return f"{self.verdict}({self.tensor_parallel})"
        if self.verdict is Verdict.NEEDS_QUANTIZATION:
            return f"{self.verdict}({self.quantization})"
        return str(self.verdict)


def weights_gb(params_b: float, precision: str) -> float:
    """Weight memory in GB: parameters x bytes per parameter."""
    try:
        return params_b * BYTES_PER_PARAM[precision]
    except KeyError:
        raise SizingError(
            f"unknown precision {precision!r}; known: {', '.join(BYTES_PER_PARAM)}"
        ) from None


def kv_bytes_per_token(shape: ModelShape, kv_bytes: float = 2.0) -> int:
    """KV-cache bytes one token occupies: 2 x layers x kv_heads x head_dim x bytes."""
    return int(2 * shape.num_layers * shape.num_kv_heads * shape.head_dim * kv_bytes)


def _kv_element_bytes(kv_cache_dtype: str, precision: str) -> float:
    # vLLM's kv_cache_dtype "auto" uses the model's activation dtype: 16-bit even
    # for AWQ/GPTQ/fp8 weights (those are weight-only quantizations here).
    if kv_cache_dtype == "auto":
        return 4.0 if precision == "fp32" else 2.0
    if kv_cache_dtype in ("fp8", "fp8_e4m3", "fp8_e5m2"):
        return 1.0
    raise SizingError(f"unknown kv_cache_dtype {kv_cache_dtype!r}; use auto or fp8")


@dataclass(frozen=True)
class _Config:
    tp: int
    precision: str
    weights: float
    kv: float
    overhead: float
    capacity: float
    max_ctx: int

    @property
    def required(self) -> float:
        return self.weights + self.kv + self.overhead

    @property
    def fits(self) -> bool:
        return self.required <= self.capacity


def _evaluate(shape, gpu, tp, precision, tokens, concurrency, util, kv_el) -> _Config:
    w = weights_gb(shape.params_b, precision)
    per_tok = kv_bytes_per_token(shape, kv_el)
    kv = per_tok * tokens / GB
    overhead = OVERHEAD_GB_PER_GPU * tp
    capacity = gpu.memory_gb * tp * util
    free_for_kv = capacity - w - overhead
    max_ctx = 0
    if free_for_kv > 0 and per_tok > 0:
        max_ctx = min(shape.max_context, math.floor(free_for_kv * GB / per_tok / concurrency))
    return _Config(tp, precision, w, kv, overhead, capacity, max(max_ctx, 0))


def size_model(
    shape: ModelShape,
    gpu: GpuType | str,
    gpu_count: int = 1,
    *,
    max_model_len: int | None = None,
    concurrency: int = 1,
    gpu_memory_utilization: float = DEFAULT_GPU_MEMORY_UTILIZATION,
    kv_cache_dtype: str = "auto",
) -> SizingResult:
    """Decide whether ``shape`` fits on ``gpu_count`` GPUs of type ``gpu``.

    ``gpu_count`` is the budget: the GPUs one replica may use. The verdict is, in order:
    FITS (one GPU), NEEDS_TENSOR_PARALLEL(n) with n <= budget, NEEDS_QUANTIZATION(q)
    within the budget, NEEDS_TENSOR_PARALLEL(n) beyond the budget (more GPUs on one
    node), NEEDS_QUANTIZATION(q) beyond the budget, else DOES_NOT_FIT.
    """
    gpu = gpu_type(gpu) if isinstance(gpu, str) else gpu
    mml = _checked_context(shape, gpu_count, concurrency, gpu_memory_utilization, max_model_len)
    kv_el = _kv_element_bytes(kv_cache_dtype, shape.precision)
    tokens = mml * concurrency

    def ev(tp: int, precision: str) -> _Config:
        return _evaluate(
            shape, gpu, tp, precision, tokens, concurrency, gpu_memory_utilization, kv_el
        )

    verdict, cfg, within, tp_needed = _choose(shape, gpu, gpu_count, ev)
    quant = cfg.precision if cfg.precision != shape.precision else None
    return SizingResult(
        verdict=verdict,
        gpu=gpu,
        gpus_requested=gpu_count,
        tensor_parallel=cfg.tp,
        precision=cfg.precision,
        quantization=quant,
        within_budget=within,
        weights_gb=cfg.weights,
        kv_bytes_per_token=kv_bytes_per_token(shape, kv_el),
        kv_cache_gb=cfg.kv,
        overhead_gb=cfg.overhead,
        required_gb=cfg.required,
        capacity_gb=cfg.capacity,
        headroom_after_weights_gb=gpu.memory_gb * cfg.tp - cfg.weights,
        max_model_len=mml,
        concurrency=concurrency,
        max_context_fits=cfg.max_ctx,
        tensor_parallel_needed=tp_needed.tp if tp_needed else None,
        explanation=_explain(verdict, cfg, gpu, gpu_count, mml, shape, tp_needed),
    )


def _checked_context(
    shape: ModelShape,
    gpu_count: int,
    concurrency: int,
    gpu_memory_utilization: float,
    max_model_len: int | None,
) -> int:
    """The context length to size for; ``SizingError`` for any input out of range."""
    if gpu_count < 1:
        raise SizingError("gpu_count must be at least 1")
    if concurrency < 1:
        raise SizingError("concurrency must be at least 1")
    if not 0 < gpu_memory_utilization <= 1:
        raise SizingError("gpu_memory_utilization must be in (0, 1]")
    mml = shape.max_context if max_model_len is None else max_model_len
    if mml < 1:
        raise SizingError("max_model_len must be at least 1")
    if mml > shape.max_context:
        raise SizingError(f"max_model_len {mml} exceeds the model's maximum {shape.max_context}")
    weights_gb(1, shape.precision)  # validate precision early
    return mml


def _choose(
    shape: ModelShape, gpu: GpuType, gpu_count: int, ev: Callable[[int, str], _Config]
) -> tuple[Verdict, _Config, bool, _Config | None]:
    """The first configuration that fits, in the order ``size_model`` documents: (verdict,
    configuration, within the budget, the fewest GPUs at the model's own precision)."""
    all_tp = [n for n in _TP_SIZES if n <= gpu.max_per_node]
    budget_tp = [n for n in all_tp if n <= gpu_count] or [1]
    beyond_tp = [n for n in all_tp if n > gpu_count]
    quants = [
        q
        for q in _QUANTIZATION_LADDER
        if BYTES_PER_PARAM[q] < BYTES_PER_PARAM[shape.precision]
        and (q != "fp8" or gpu.supports_fp8)
    ]

    def first_fit(tps: list[int], precision: str) -> _Config | None:
        return next((c for c in (ev(n, precision) for n in tps) if c.fits), None)

    tp_needed = first_fit(all_tp, shape.precision)
    ladder = [(budget_tp, shape.precision, True)] + [(budget_tp, q, True) for q in quants]
    ladder += [(beyond_tp, shape.precision, False)] + [(beyond_tp, q, False) for q in quants]
    for tps, precision, within in ladder:
        if (c := first_fit(tps, precision)) is not None:
            if precision != shape.precision:
                return Verdict.NEEDS_QUANTIZATION, c, within, tp_needed
            v = Verdict.FITS if c.tp == 1 else Verdict.NEEDS_TENSOR_PARALLEL
            return v, c, within, tp_needed
    return Verdict.DOES_NOT_FIT, ev(budget_tp[-1], shape.precision), False, tp_needed


def _explain(verdict, cfg, gpu, budget, mml, shape, tp_needed) -> str:
    need = f"needs ~{cfg.required:.1f} GB (weights {cfg.weights:.1f} + KV {cfg.kv:.1f}"
    need += f" + overhead {cfg.overhead:.1f})"
    have = f"{cfg.tp} x {gpu.display_name} give {cfg.capacity:.1f} GB usable"
    if verdict is Verdict.FITS:
        return f"Fits: {need}; {have}; up to {cfg.max_ctx} tokens of context."
    if verdict is Verdict.NEEDS_TENSOR_PARALLEL:
        return f"Needs --tensor-parallel-size {cfg.tp}: {need}; {have}."
    if verdict is Verdict.NEEDS_QUANTIZATION:
        alt = f" (or {tp_needed.tp} GPUs at {shape.precision})" if tp_needed else ""
        return f"Needs {cfg.precision} quantization on {cfg.tp} GPU(s): {need}; {have}{alt}."
    return (
        f"Does not fit {gpu.display_name} even at {gpu.max_per_node} GPUs or 4-bit: "
        f"at {budget} GPU(s) it {need[0].lower() + need[1:]} for max_model_len {mml}."
    )
