"""The admin page's GPU panel: per-GPU telemetry table, a utilization/memory chart and the
warnings; when no telemetry source answers, a plain message in this panel only (which
source said what; the commands that turn each on behind "How to turn it on", run only while
open: their code blocks load Streamlit's syntax highlighter, ~1 s of the browser's main
thread at a page open here, bench/RESULTS.md 3b), and the rest of the page goes on.

Called by the status section as ``gpu_section(settings, pods, read=...)``, ``read`` being
the telemetry read of ``webapp.admin.status`` (tests give it credentials for the fake PromQL
API).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

import pandas as pd
import streamlit as st

from webapp.admin.gpus import chart_rows, gpu_rows, gpu_warnings
from webapp.cluster.errors import TelemetryUnavailable
from webapp.cluster.inventory import PodInfo
from webapp.cluster.telemetry import Telemetry
from webapp.ui.text import literal

log = logging.getLogger(__name__)


def gpu_section(
    settings: Any,
    pods: Iterable[PodInfo],
    *,
    read: Callable[[], Telemetry],
) -> None:
    """Draw the GPU panel. ``pods``: the console namespace's pods (to name what each GPU
    serves); ``read``: reads the telemetry."""
    st.subheader("GPUs")
    try:
        telemetry = read()
    except TelemetryUnavailable as exc:
        _unavailable(exc)
        return
    except Exception as exc:  # noqa: BLE001 - a bug here must not take the page down
        log.warning("GPU telemetry failed: %s", type(exc).__name__)
        st.warning(f"GPU telemetry failed unexpectedly ({type(exc).__name__}).")
        return
    rows = gpu_rows(telemetry.gpus, pods)
    st.caption(f"Source: {literal(telemetry.source)}.")
    for failure in telemetry.skipped:
        st.caption(f"Not used: {literal(str(failure))}.")
    for warning in gpu_warnings(rows, settings.gpu_temperature_warn_c):
        st.warning(literal(warning.text), icon=":material/warning:")
    st.dataframe([r.as_table_row() for r in rows], key="gpu_table", hide_index=True)
    chart = pd.DataFrame(chart_rows(rows)).set_index("GPU")
    st.bar_chart(chart, y=["utilization %", "memory %"], stack=False, y_label="%")


def _unavailable(exc: TelemetryUnavailable) -> None:
    st.warning(
        "GPU telemetry is unavailable: no source answered. Pods, nodes and the rest of "
        "this page are not affected.",
        icon=":material/monitoring:",
    )
    for failure in exc.failures:
        st.markdown(f"**{literal(failure.source)}**: {literal(failure.reason)}.")
    box = st.expander(
        "How to turn it on", key="gpu_turn_on", icon=":material/terminal:", on_change="rerun"
    )
    if not box.open:
        return
    with box:
        for failure in exc.failures:
            st.caption(f"{literal(failure.source)}:")
            st.code(failure.turn_on, language="bash", wrap_lines=True)
