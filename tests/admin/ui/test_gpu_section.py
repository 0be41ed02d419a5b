"""AppTest of the admin page's GPU panel (``gpu_section``) against the fake DCGM exporter,
the fake PromQL API and the fake Kubernetes API's service proxy: rows, chart, warnings,
and a source that is down, slow or sends garbage -> a plain message in this panel only."""

from __future__ import annotations

import pytest
from google.oauth2.credentials import Credentials
from streamlit.testing.v1 import AppTest

from tests.fakes.dcgm_server import FakeDcgm, FakeDcgmServer, GpuSpec
from tests.fakes.k8s_server import FakeCluster
from webapp.cluster.inventory import PodInfo
from webapp.cluster.k8s import connect
from webapp.settings import Settings

CREDS = Credentials(token="ya29.app-test-token")  # noqa: S106 - a test token
BUSY = GpuSpec(node="gke-gpu-a", util=87, fb_used=21_000, fb_free=1_491, temp=71, power=68.2,
               pod="vllm-7d9f-abcde", namespace="vllm", container="vllm")  # fmt: skip
HOT = GpuSpec(node="gke-gpu-b", util=12, fb_used=22_400, fb_free=91, temp=93, xid=79)
POD = PodInfo(name="vllm-7d9f-abcde", namespace="vllm", phase="Running", ready=True,
              restarts=0, node="gke-gpu-a", age_s=60, reason="", message="",
              model="llama-2-7b", ip="10.0.0.9", gpus=1)  # fmt: skip


def panel(settings, pods, cluster, credentials):
    import streamlit as st

    from webapp.admin.ui.gpus import gpu_section
    from webapp.cluster.telemetry import read_gpu_telemetry

    st.header("Status")
    gpu_section(
        settings, pods,
        read=lambda: read_gpu_telemetry(settings, cluster, credentials=credentials),
    )  # fmt: skip
    st.subheader("Node pools")  # the rest of the page goes on
    st.dataframe([{"pool": "gpu-pool"}], key="pools")


def settings(**kw) -> Settings:
    base = {"gke_project": "demo-project", "gke_location": "us-central1",
            "gke_cluster": "llm-cluster", "gpu_telemetry_timeout_s": 0.5}  # fmt: skip
    return Settings(**{**base, **kw})


def run(s: Settings, cluster=None) -> AppTest:
    at = AppTest.from_function(panel, args=(s, [POD], cluster, CREDS), default_timeout=30)
    return at.run()


def shown(at: AppTest) -> str:
    parts = []
    for kind in ("warning", "markdown", "caption", "subheader", "code"):
        parts += [str(e.value) for e in getattr(at, kind)]
    return "\n".join(parts).replace("\\", "").replace("**", "")


def table(at: AppTest, column: str):
    """The first table with ``column`` (AppTest does not expose dataframe keys)."""
    return next((d.value for d in at.dataframe if column in d.value.columns), None)


def turn_on_commands(at: AppTest) -> list[str]:
    """The commands under "How to turn it on": none drawn until the admin opens it (their code
    blocks load the browser's syntax highlighter), then one per source."""
    assert not at.code, "code blocks drawn before the expander is opened"
    at.session_state["gpu_turn_on"] = True  # the admin opens the expander
    return [c.value for c in at.run().code]


def charts(at: AppTest) -> list:
    return list(at.get("vega_lite_chart"))


@pytest.fixture
def dcgm():
    with FakeDcgmServer(FakeDcgm(gpus=[BUSY, HOT], slow_s=2.0)) as server:
        yield server


def test_rows_chart_and_warnings_from_the_managed_source(dcgm):
    at = run(settings(gpu_prometheus_url=dcgm.query_url))
    assert not at.exception
    rows = table(at, "last XID")
    assert list(rows["node"]) == ["gke-gpu-a", "gke-gpu-b"]
    assert list(rows["pod"]) == ["vllm/vllm-7d9f-abcde", ""]
    assert list(rows["serving"]) == ["llama-2-7b", ""]
    assert list(rows["utilization %"]) == [87.0, 12.0]
    assert list(rows["memory %"]) == [93.4, 99.6]
    assert list(rows["last XID"]) == [0, 79]
    (chart,) = charts(at)
    assert '"mark": {"type": "bar"}' in chart.proto.spec
    data = b"".join(d.data.data for d in chart.proto.datasets)  # Arrow, series names melted
    assert b"utilization %" in data and b"memory %" in data and b"gke-gpu-b/0" in data
    text = shown(at)
    assert "Source: GKE managed DCGM metrics (Managed Service for Prometheus)." in text
    warnings = [w.value.replace("\\", "") for w in at.warning]
    assert len(warnings) == 3 and all(w.startswith("GPU 0 on gke-gpu-b:") for w in warnings)
    assert "99.6 % full" in warnings[0] and "XID error 79" in warnings[1]
    assert "93 °C, above 85 °C" in warnings[2]
    assert table(at, "pool") is not None


def test_temperature_threshold_comes_from_the_setting(dcgm):
    at = run(settings(gpu_prometheus_url=dcgm.query_url, gpu_temperature_warn_c=95))
    assert [w for w in at.warning if "°C" in w.value] == []


def test_exporter_source_through_the_cluster_when_the_managed_one_is_off(dcgm):
    with FakeCluster(gpu_nodes=[{"name": "gke-gpu-a"}]) as fc:
        fc.proxy_to("gpu-operator", "nvidia-dcgm-exporter", dcgm.url)
        at = run(settings(gke_project=""), connect(fc.kubeconfig_path))
    assert not at.exception
    assert list(table(at, "last XID")["GPU"]) == ["0", "0"]
    text = shown(at)
    assert "Source: DCGM exporter in the cluster." in text
    assert "Not used: GKE managed DCGM metrics" in text and "is not set" in text
    assert len(charts(at)) == 1


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        ("down", "it cannot be reached"),
        ("slow", "it did not answer within 0.5 s"),
        ("garbage", "its answer is not a PromQL result"),
    ],
)
def test_a_bad_source_is_a_plain_message_in_the_panel_only(dcgm, fault, reason):
    dcgm.state.fault = fault
    at = run(settings(gpu_prometheus_url=dcgm.query_url))
    assert not at.exception
    text = shown(at)
    assert "GPU telemetry is unavailable" in text
    assert f"GKE managed DCGM metrics (Managed Service for Prometheus): {reason}" in text
    assert "DCGM exporter in the cluster: no Kubernetes cluster is connected." in text
    codes = turn_on_commands(at)
    assert any("--monitoring=SYSTEM,DCGM" in c and "roles/monitoring.viewer" in c for c in codes)
    assert any("gpu-operator/nvidia-dcgm-exporter" in c for c in codes)
    assert not [d for d in at.dataframe if d.key == "gpu_table"] and not charts(at)
    assert table(at, "pool") is not None  # the rest of the page is drawn
    assert "ya29" not in text


def test_both_sources_down_name_both_and_their_commands(dcgm):
    dcgm.state.fault = "garbage"
    with FakeCluster(gpu_nodes=[{"name": "gke-gpu-a"}]) as fc:
        fc.proxy_to("gpu-operator", "nvidia-dcgm-exporter", dcgm.url)
        at = run(settings(gpu_prometheus_url=dcgm.query_url), connect(fc.kubeconfig_path))
        text = shown(at)
        assert len(turn_on_commands(at)) == 2
    assert "DCGM exporter in the cluster: its answer is not Prometheus metrics text." in text
