"""The admin page's GPU panel, without Streamlit: one row per GPU, joined with the pod that
uses it, and the warnings an operator must not miss (memory nearly full, an XID error, a
hot GPU). Pure: table-driven tests in tests/admin/test_gpus.py."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from webapp.cluster.inventory import PodInfo
from webapp.cluster.telemetry import GpuSample

MEMORY_WARN_FRAC = 0.95  # "memory > 95%"


@dataclass(frozen=True)
class GpuRow:
    """One GPU as the table shows it; None where the source gave no figure."""

    node: str
    gpu: str
    model_name: str
    pod: str  # "" when no pod holds it
    served_model: str  # what that pod serves, when it is one of the console's vLLM pods
    util_pct: float | None
    memory_used_mib: float | None
    memory_total_mib: float | None
    memory_used_pct: float | None
    temp_c: float | None
    power_w: float | None
    xid: int | None

    def as_table_row(self) -> dict[str, object]:
        return {
            "node": self.node, "GPU": self.gpu, "model": self.model_name, "pod": self.pod,
            "serving": self.served_model, "utilization %": self.util_pct,
            "memory used MiB": self.memory_used_mib, "memory total MiB": self.memory_total_mib,
            "memory %": self.memory_used_pct, "temperature °C": self.temp_c,
            "power W": self.power_w, "last XID": self.xid,
        }  # fmt: skip


@dataclass(frozen=True)
class GpuWarning:
    """Something wrong with one GPU, in plain words."""

    node: str
    gpu: str
    kind: str  # memory | xid | temperature
    text: str


def _pod_for(sample: GpuSample, pods: Iterable[PodInfo]) -> tuple[str, str]:
    """(pod, served model): DCGM's attribution first, else the console's one pod asking for
    GPUs on that node (an exporter without the pod mapping names none)."""
    pods = list(pods)
    if sample.pod:
        named = next((p for p in pods if p.name == sample.pod), None)
        pod = sample.pod if not sample.namespace else f"{sample.namespace}/{sample.pod}"
        return pod, named.model if named else ""
    on_node = [p for p in pods if p.node == sample.node and p.gpus > 0]
    if len(on_node) == 1:
        return f"{on_node[0].namespace}/{on_node[0].name}", on_node[0].model
    return "", ""


def _round(value: float | None, digits: int = 1) -> float | None:
    return None if value is None else round(value, digits)


def gpu_rows(samples: Iterable[GpuSample], pods: Iterable[PodInfo] = ()) -> list[GpuRow]:
    """Table rows for ``samples``, in their order, joined with ``pods`` (the console's)."""
    pods = tuple(pods)
    rows = []
    for s in samples:
        pod, served = _pod_for(s, pods)
        frac = s.memory_used_frac
        rows.append(
            GpuRow(
                node=s.node, gpu=s.gpu, model_name=s.model_name, pod=pod, served_model=served,
                util_pct=_round(s.util_pct), memory_used_mib=_round(s.fb_used_mib, 0),
                memory_total_mib=_round(s.fb_total_mib, 0),
                memory_used_pct=_round(frac * 100 if frac is not None else None),
                temp_c=_round(s.temp_c), power_w=_round(s.power_w),
                xid=None if s.xid is None else int(s.xid),
            )
        )  # fmt: skip
    return rows


def gpu_warnings(rows: Iterable[GpuRow], temperature_warn_c: float) -> list[GpuWarning]:
    """Memory above 95 %, an XID error reported, temperature above ``temperature_warn_c``."""
    out = []
    for r in rows:
        where = f"GPU {r.gpu} on {r.node}"
        if r.memory_used_pct is not None and r.memory_used_pct > MEMORY_WARN_FRAC * 100:
            out.append(GpuWarning(r.node, r.gpu, "memory", (
                f"{where}: memory {r.memory_used_pct:g} % full — a longer context or more "
                "parallel requests may fail with out-of-memory"
            )))  # fmt: skip
        if r.xid:
            out.append(GpuWarning(r.node, r.gpu, "xid", (
                f"{where}: the driver reported XID error {r.xid} — see NVIDIA's XID list; "
                "the node may need a restart"
            )))  # fmt: skip
        if r.temp_c is not None and r.temp_c > temperature_warn_c:
            out.append(GpuWarning(r.node, r.gpu, "temperature", (
                f"{where}: {r.temp_c:g} °C, above {temperature_warn_c:g} °C — it may throttle"
            )))  # fmt: skip
    return out


def chart_rows(rows: Iterable[GpuRow]) -> list[dict[str, object]]:
    """Utilization and memory use (both in %) per GPU, for a bar chart."""
    return [
        {"GPU": f"{r.node}/{r.gpu}", "utilization %": r.util_pct or 0.0,
         "memory %": r.memory_used_pct or 0.0}
        for r in rows
    ]  # fmt: skip
