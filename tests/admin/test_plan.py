"""Planning a deploy (``webapp.admin.plan``): sizing verdicts and the ModelSpec they give."""

from __future__ import annotations

import pytest

from webapp.admin.catalog import load_catalog
from webapp.admin.plan import plan_deploy
from webapp.admin.sizing import SizingError, Verdict
from webapp.cluster.errors import InvalidModelSpec
from webapp.cluster.model_spec import vllm_args

CATALOG = load_catalog()


@pytest.mark.parametrize(
    ("model", "gpu", "count", "mml", "conc", "verdict", "tp", "quant", "blocked"),
    [
        ("llama-2-7b", "nvidia-l4", 1, 4096, 1, Verdict.FITS, 1, None, ""),
        ("llama-2-13b", "nvidia-l4", 2, 4096, 1, Verdict.NEEDS_TENSOR_PARALLEL, 2, None, ""),
        ("llama-2-13b", "nvidia-l4", 1, 4096, 1, Verdict.NEEDS_QUANTIZATION, 1, "fp8", ""),
        ("mistral-7b", "nvidia-tesla-t4", 1, 8192, 1, Verdict.NEEDS_QUANTIZATION, 0, None,
         "pre-quantized checkpoint"),
        ("llama-3-1-70b-instruct", "nvidia-tesla-t4", 1, 131072, 1, Verdict.DOES_NOT_FIT, 0,
         None, "does not fit"),
        ("llama-3-1-70b-instruct", "nvidia-l4", 1, 4096, 1,
         Verdict.NEEDS_TENSOR_PARALLEL, 0, None, "raise the GPU count"),
    ],
)  # fmt: skip
def test_plan_deploy(model, gpu, count, mml, conc, verdict, tp, quant, blocked):
    plan = plan_deploy(
        CATALOG.get(model), gpu=gpu, gpu_count=count, max_model_len=mml, concurrency=conc
    )
    assert plan.sizing.verdict is verdict
    if blocked:
        assert plan.spec is None and blocked in plan.blocked
    else:
        assert plan.blocked == ""
        assert plan.spec.name == model and plan.spec.tensor_parallel_size == tp
        assert plan.spec.quantization == quant and plan.spec.gpu_type == gpu
        assert plan.spec.revision == CATALOG.get(model).revision


def test_plan_deploy_rejects_context_above_model_maximum():
    with pytest.raises(SizingError):
        plan_deploy(CATALOG.get("llama-2-7b"), gpu="nvidia-l4", gpu_count=1, max_model_len=9000)


@pytest.mark.parametrize(
    ("chosen", "kept", "error"),
    [(None, 4, None), (1, 1, None), (64, 64, None), (0, None, "stream_interval"),
     (65, None, "stream_interval")],
)  # fmt: skip
def test_plan_deploy_carries_the_tokens_per_streamed_chunk(chosen, kept, error):
    kwargs = {} if chosen is None else {"stream_interval": chosen}
    model = CATALOG.get("llama-2-7b")
    if error:
        with pytest.raises(InvalidModelSpec) as err:
            plan_deploy(model, gpu="nvidia-l4", gpu_count=1, max_model_len=4096, **kwargs)
        assert err.value.field == error
        return
    plan = plan_deploy(model, gpu="nvidia-l4", gpu_count=1, max_model_len=4096, **kwargs)
    assert plan.spec.stream_interval == kept
    assert f"--stream-interval={kept}" in vllm_args(plan.spec)
