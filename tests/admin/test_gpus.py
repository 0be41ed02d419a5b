"""The GPU panel's rows, pod join, warnings and chart data (pure, table-driven)."""

from __future__ import annotations

import pytest

from webapp.admin.gpus import chart_rows, gpu_rows, gpu_warnings
from webapp.cluster.inventory import PodInfo
from webapp.cluster.telemetry import GpuSample


def pod(name: str, node: str, *, gpus: int = 1, model: str = "llama-2-7b") -> PodInfo:
    return PodInfo(name=name, namespace="vllm", phase="Running", ready=True, restarts=0,
                   node=node, age_s=60, reason="", message="", model=model, ip="10.0.0.9",
                   gpus=gpus)  # fmt: skip


def gpu(node="n1", index="0", **kw) -> GpuSample:
    base = {"util_pct": 50.0, "fb_used_mib": 10_000.0, "fb_free_mib": 12_528.0,
            "temp_c": 60.0, "power_w": 70.0, "xid": 0.0, "model_name": "NVIDIA L4"}  # fmt: skip
    return GpuSample(node=node, gpu=index, **{**base, **kw})


@pytest.mark.parametrize(
    ("sample", "pods", "pod_name", "serving"),
    [
        # DCGM names the pod: the console's pod of that name tells what it serves
        (gpu(pod="vllm-a", namespace="vllm"), [pod("vllm-a", "n1")], "vllm/vllm-a", "llama-2-7b"),
        # DCGM names a pod of another namespace: shown, serving unknown
        (gpu(pod="train-0", namespace="ml"), [pod("vllm-a", "n1")], "ml/train-0", ""),
        # no attribution: the one console pod asking for GPUs on that node
        (gpu(), [pod("vllm-a", "n1"), pod("web", "n1", gpus=0)], "vllm/vllm-a", "llama-2-7b"),
        # two candidates on the node: no guess
        (gpu(), [pod("vllm-a", "n1"), pod("vllm-b", "n1")], "", ""),
        # none on that node
        (gpu(node="n2"), [pod("vllm-a", "n1")], "", ""),
    ],
)
def test_rows_join_the_pod_that_uses_the_gpu(sample, pods, pod_name, serving):
    (row,) = gpu_rows([sample], pods)
    assert (row.pod, row.served_model) == (pod_name, serving)


def test_row_figures_and_missing_values():
    full, bare = gpu_rows([gpu(), GpuSample(node="n2", gpu="1")])
    assert (full.util_pct, full.memory_used_mib, full.memory_total_mib) == (50.0, 10_000, 22_528)
    assert full.memory_used_pct == 44.4 and full.xid == 0
    assert bare.memory_used_pct is None and bare.xid is None and bare.temp_c is None
    assert full.as_table_row()["memory %"] == 44.4


@pytest.mark.parametrize(
    ("sample", "threshold", "kinds"),
    [
        (gpu(), 85, []),
        (gpu(fb_used_mib=21_500.0, fb_free_mib=1_000.0), 85, ["memory"]),  # 95.6 %
        (gpu(fb_used_mib=95.0, fb_free_mib=5.0), 85, []),  # exactly 95 %: not above
        (gpu(xid=79.0), 85, ["xid"]),
        (gpu(xid=None), 85, []),  # the managed source has no XID field
        (gpu(temp_c=86.0), 85, ["temperature"]),
        (gpu(temp_c=86.0), 90, []),
        (gpu(temp_c=None, fb_free_mib=None), 85, []),
        (gpu(fb_used_mib=22_000.0, fb_free_mib=10.0, xid=48.0, temp_c=95.0), 85,
         ["memory", "xid", "temperature"]),
    ],
)  # fmt: skip
def test_warnings(sample, threshold, kinds):
    warnings = gpu_warnings(gpu_rows([sample]), threshold)
    assert [w.kind for w in warnings] == kinds
    assert all(w.text.startswith("GPU 0 on n1:") for w in warnings)


def test_warning_texts_say_what_and_how_much():
    hot = gpu(temp_c=91.0, xid=79.0, fb_used_mib=22_000.0, fb_free_mib=100.0)
    texts = [w.text for w in gpu_warnings(gpu_rows([hot]), 85)]
    assert "99.5 % full" in texts[0]
    assert "XID error 79" in texts[1]
    assert "91 °C, above 85 °C" in texts[2]


def test_chart_rows_per_gpu_in_percent():
    rows = gpu_rows([gpu(), GpuSample(node="n2", gpu="1")])
    assert chart_rows(rows) == [
        {"GPU": "n1/0", "utilization %": 50.0, "memory %": 44.4},
        {"GPU": "n2/1", "utilization %": 0.0, "memory %": 0.0},
    ]
