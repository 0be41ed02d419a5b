"""GPU telemetry: DCGM text and PromQL answers parsed (table-driven), both sources read over
real HTTP (fake Managed Service for Prometheus; fake DCGM exporter behind the fake
Kubernetes API's service proxy), and every fault turned into a plain reason plus the
command that turns the source on."""

from __future__ import annotations

import math
import socket

import pytest
from google.oauth2.credentials import Credentials

from tests.fakes.dcgm_server import FakeDcgm, FakeDcgmServer, GpuSpec, exporter_text
from tests.fakes.k8s_server import FakeCluster
from webapp.cluster.errors import TelemetryUnavailable
from webapp.cluster.k8s import connect
from webapp.cluster.telemetry import (
    EXPORTER,
    MANAGED,
    GpuSample,
    _Garbage,
    gpus_from_series,
    managed_url,
    parse_exporter_text,
    parse_promql_vector,
    promql_query,
    read_exporter,
    read_gpu_telemetry,
    read_managed,
)
from webapp.settings import Settings

TOKEN = "ya29.test-token-never-shown"  # noqa: S105 - a test token
CREDS = Credentials(token=TOKEN)
DCGM_NS, DCGM_SVC = "gpu-operator", "nvidia-dcgm-exporter"

BUSY = GpuSpec(node="gke-gpu-a", index=0, util=87, fb_used=21_000, fb_free=1_491, temp=71,
               power=68.2, pod="vllm-7d9f-abcde", namespace="vllm", container="vllm")  # fmt: skip
IDLE = GpuSpec(node="gke-gpu-b", index=0)
HOT = GpuSpec(node="gke-gpu-b", index=1, temp=91, xid=79, cluster="other-cluster")

# One exporter line as dcgm-exporter 3.x writes it, pod labels renamed by a scraper.
EXPORTED = """\
# HELP DCGM_FI_DEV_GPU_UTIL GPU utilization (in %).
# TYPE DCGM_FI_DEV_GPU_UTIL gauge
DCGM_FI_DEV_GPU_UTIL{gpu="1",UUID="GPU-1",device="nvidia1",modelName="NVIDIA A100-SXM4-40GB",Hostname="n1",exported_pod="p",exported_namespace="ns",exported_container="c",pod="dcgm-exporter-x",namespace="gpu-operator"} 12
# HELP DCGM_FI_DEV_FB_USED Framebuffer memory used (in MiB).
# TYPE DCGM_FI_DEV_FB_USED gauge
DCGM_FI_DEV_FB_USED{gpu="1",UUID="GPU-1",device="nvidia1",modelName="NVIDIA A100-SXM4-40GB",Hostname="n1"} NaN
DCGM_FI_DEV_SM_CLOCK{gpu="1",UUID="GPU-1",Hostname="n1"} 1410
"""


def settings(**kw) -> Settings:
    base = {"gke_project": "demo-project", "gke_location": "us-central1",
            "gke_cluster": "llm-cluster", "gpu_telemetry_timeout_s": 0.5}  # fmt: skip
    return Settings(**{**base, **kw})


# ---------------------------------------------------------------- pure parsing


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            exporter_text([BUSY]),
            [GpuSample(node="gke-gpu-a", gpu="0", uuid=BUSY.uuid, model_name="NVIDIA L4",
                       pod="vllm-7d9f-abcde", namespace="vllm", container="vllm",
                       util_pct=87, fb_used_mib=21_000, fb_free_mib=1_491, temp_c=71,
                       power_w=68.2, xid=0)],
        ),
        (
            EXPORTED,  # exported_* wins over the scraper's own pod label; NaN is no value
            [GpuSample(node="n1", gpu="1", uuid="GPU-1", model_name="NVIDIA A100-SXM4-40GB",
                       pod="p", namespace="ns", container="c", util_pct=12)],
        ),
        (
            exporter_text([IDLE, HOT, BUSY]),  # sorted by node, then index
            [("gke-gpu-a", "0", "vllm-7d9f-abcde"), ("gke-gpu-b", "0", ""),
             ("gke-gpu-b", "1", "")],
        ),
    ],
)  # fmt: skip
def test_exporter_text_gives_one_sample_per_gpu(text, expected):
    got = parse_exporter_text(text)
    if isinstance(expected[0], tuple):
        assert [(g.node, g.gpu, g.pod) for g in got] == expected
    else:
        assert got == expected


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("<html><body>502 Bad Gateway</body></html>", "not Prometheus metrics text"),
        ("", "no DCGM GPU metrics"),
        ("# HELP go_goroutines x\n# TYPE go_goroutines gauge\ngo_goroutines 12\n", "no DCGM"),
        ('DCGM_FI_DEV_GPU_UTIL{gpu="0" 12\n', "not Prometheus metrics text"),
    ],
)
def test_exporter_garbage_is_named(text, reason):
    with pytest.raises(_Garbage, match=reason):
        parse_exporter_text(text)


@pytest.mark.parametrize("reverse", [False, True])
def test_a_gpu_that_changed_hands_keeps_the_pod_that_holds_it(reverse):
    series = [
        ("DCGM_FI_DEV_GPU_UTIL", {"Hostname": "n", "gpu": "0", "UUID": "u"}, 5.0),
        ("DCGM_FI_DEV_GPU_UTIL", {"Hostname": "n", "gpu": "0", "UUID": "u", "pod": "q"}, 6.0),
        ("DCGM_FI_DEV_GPU_TEMP", {"Hostname": "n", "gpu": "0", "UUID": "u"}, math.nan),
        ("NOT_DCGM", {"Hostname": "n", "gpu": "0"}, 1.0),
    ]
    (g,) = gpus_from_series(reversed(series) if reverse else series)
    assert (g.pod, g.util_pct, g.temp_c) == ("q", 6.0, None)


def _vector(*items):
    return {"status": "success", "data": {"resultType": "vector", "result": list(items)}}


SAMPLE = {"metric": {"__name__": "DCGM_FI_DEV_FB_USED", "Hostname": "n", "gpu": "0",
                     "UUID": "u", "cluster": "c"}, "value": [1.7e9, "1024"]}  # fmt: skip


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (_vector(SAMPLE), [GpuSample(node="n", gpu="0", uuid="u", fb_used_mib=1024.0)]),
        (_vector(), []),
        ({"status": "error", "errorType": "bad_data", "error": "parse error"}, "bad_data"),
        ({"status": "success", "data": {"resultType": "matrix", "result": []}}, "not a PromQL"),
        ([1, 2], "not a PromQL result"),
        (_vector({"metric": {"__name__": "DCGM_FI_DEV_FB_USED"}, "value": []}), "malformed"),
        (_vector({"metric": {"__name__": "x"}, "value": [1, "many"]}), "malformed"),
    ],
)
def test_promql_vector(payload, expected):
    if isinstance(expected, str):
        with pytest.raises(_Garbage, match=expected):
            parse_promql_vector(payload)
    else:
        assert parse_promql_vector(payload) == expected


@pytest.mark.parametrize(
    ("cluster", "expected_part"),
    [
        ("llm-cluster", 'DCGM_FI_DEV_GPU_UTIL{cluster="llm-cluster"} or '),
        ('we"ird\\', 'DCGM_FI_DEV_GPU_TEMP{cluster="we\\"ird\\\\"}'),
        ("", "DCGM_FI_DEV_GPU_UTIL or DCGM_FI_DEV_FB_USED or "),
    ],
)
def test_promql_query_names_every_field(cluster, expected_part):
    q = promql_query(cluster)
    assert expected_part in q
    assert q.count(" or ") == 5 and "DCGM_FI_DEV_XID_ERRORS" in q


@pytest.mark.parametrize(
    ("kw", "url"),
    [
        ({}, "https://monitoring.googleapis.com/v1/projects/demo-project/location/global/"
             "prometheus/api/v1/query"),
        ({"gpu_prometheus_url": "http://127.0.0.1:9/q/"}, "http://127.0.0.1:9/q"),
        ({"gke_project": ""}, ""),
    ],
)  # fmt: skip
def test_managed_url(kw, url):
    assert managed_url(settings(**kw)) == url


# ---------------------------------------------------------------- source 1: managed PromQL


@pytest.fixture
def dcgm():
    with FakeDcgmServer(FakeDcgm(gpus=[BUSY, IDLE, HOT], slow_s=2.0)) as server:
        yield server


def test_managed_source_reads_this_clusters_gpus_with_a_bearer_token(dcgm):
    s = settings(gpu_prometheus_url=dcgm.query_url)
    t = read_gpu_telemetry(s, credentials=CREDS)
    assert t.source == MANAGED and t.skipped == ()
    assert [(g.node, g.gpu, g.util_pct, g.pod) for g in t.gpus] == [
        ("gke-gpu-a", "0", 87.0, "vllm-7d9f-abcde"), ("gke-gpu-b", "0", 0.0, ""),
    ]  # HOT is in another cluster  # fmt: skip
    assert dcgm.state.seen_auth == [f"Bearer {TOKEN}"]
    assert 'cluster="llm-cluster"' in dcgm.state.queries[0]


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        ("down", "cannot be reached"),
        ("slow", "did not answer within 0.5 s"),
        ("garbage", "not a PromQL result"),
        ("refuse", "roles/monitoring.viewer"),
    ],
)
def test_managed_source_faults_are_plain(dcgm, fault, reason):
    dcgm.state.fault = fault
    s = settings(gpu_prometheus_url=dcgm.query_url)
    with pytest.raises(TelemetryUnavailable) as info:
        read_gpu_telemetry(s, credentials=CREDS)
    managed, exporter = info.value.failures
    assert managed.source == MANAGED and reason in managed.reason
    assert "--monitoring=SYSTEM,DCGM" in managed.turn_on
    assert "--enable-managed-prometheus" in managed.turn_on
    assert "roles/monitoring.viewer" in managed.turn_on
    assert exporter.source == EXPORTER and "no Kubernetes cluster" in exporter.reason
    assert TOKEN not in str(info.value)


def test_managed_source_without_series_says_dcgm_is_off_or_no_gpu_node(dcgm):
    dcgm.state.gpus = []
    with pytest.raises(TelemetryUnavailable, match="DCGM metrics are off, or no GPU node"):
        read_gpu_telemetry(settings(gpu_prometheus_url=dcgm.query_url), credentials=CREDS)


def test_managed_source_unreachable_port():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{sock.getsockname()[1]}/api/v1/query"
    sock.close()
    with pytest.raises(Exception, match="cannot be reached"):
        read_managed(settings(gpu_prometheus_url=url), credentials=CREDS)


def test_managed_source_not_configured_without_project():
    with pytest.raises(TelemetryUnavailable, match="GKE_PROJECT .* is not set"):
        read_gpu_telemetry(settings(gke_project=""))


def test_managed_source_without_google_credentials(dcgm, monkeypatch, tmp_path):
    """No Workload Identity, no key file, not on GCE: a plain reason, no query sent."""
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "missing.json"))
    with pytest.raises(TelemetryUnavailable, match="no usable Google credentials"):
        read_gpu_telemetry(settings(gpu_prometheus_url=dcgm.query_url))
    assert dcgm.state.seen_auth == []


def test_default_credentials_are_found_once_per_process(dcgm, monkeypatch):
    """The status view reads telemetry on every refresh: the credentials are looked up once
    and their (still valid) token reused, not fetched anew each time."""
    import google.auth

    from webapp.cluster import google_auth

    found = []

    def default(scopes=None):
        found.append(scopes)
        return CREDS, "demo-project"

    monkeypatch.setattr(google.auth, "default", default)
    google_auth.default_credentials.cache_clear()
    try:
        s = settings(gpu_prometheus_url=dcgm.query_url)
        for _ in range(3):
            assert read_gpu_telemetry(s).source == MANAGED
    finally:
        google_auth.default_credentials.cache_clear()
    assert len(found) == 1
    assert dcgm.state.seen_auth == [f"Bearer {TOKEN}"] * 3


# ---------------------------------------------------------------- source 2: exporter via proxy


@pytest.fixture
def k8s(dcgm):
    with FakeCluster(gpu_nodes=[{"name": "gke-gpu-a"}]) as fc:
        fc.proxy_to(DCGM_NS, DCGM_SVC, dcgm.url)
        yield fc


def test_exporter_source_through_the_service_proxy(dcgm, k8s):
    cluster = connect(k8s.kubeconfig_path)
    s = settings(gke_project="")  # no managed source: straight to the exporter
    t = read_gpu_telemetry(s, cluster)
    assert t.source == EXPORTER
    assert [f.source for f in t.skipped] == [MANAGED]
    assert [(g.node, g.gpu, g.xid) for g in t.gpus] == [
        ("gke-gpu-a", "0", 0.0), ("gke-gpu-b", "0", 0.0), ("gke-gpu-b", "1", 79.0),
    ]  # fmt: skip
    (req,) = [r for r in k8s.requests if r.resource == "services/proxy"]
    assert (req.verb, req.namespace, req.name) == ("get", DCGM_NS, f"{DCGM_SVC}:9400")


def test_managed_fault_falls_back_to_the_exporter(dcgm, k8s):
    s = settings(gpu_prometheus_url=dcgm.url + "/no-query-api")
    dcgm.state.gpus = [BUSY]
    t = read_gpu_telemetry(s, connect(k8s.kubeconfig_path), credentials=CREDS)
    assert t.source == EXPORTER and len(t.gpus) == 1
    (skipped,) = t.skipped
    assert skipped.source == MANAGED and "no Prometheus query API" in skipped.reason


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        ("down", "no exporter pod answering"),
        ("slow", "did not answer within 0.5 s"),
        ("garbage", "not Prometheus metrics text"),
    ],
)
def test_exporter_faults_are_plain(dcgm, k8s, fault, reason):
    dcgm.state.fault = fault
    with pytest.raises(TelemetryUnavailable) as info:
        read_gpu_telemetry(settings(gke_project=""), connect(k8s.kubeconfig_path))
    exporter = info.value.failures[-1]
    assert exporter.source == EXPORTER and reason in exporter.reason
    assert f"{DCGM_NS}/{DCGM_SVC}" in exporter.turn_on


@pytest.mark.parametrize(
    ("kw", "reason"),
    [
        ({"dcgm_exporter_service": "dcgm-exporter"}, "no Service dcgm-exporter in namespace"),
        ({"dcgm_exporter_namespace": "monitoring"}, "no Service nvidia-dcgm-exporter"),
    ],
)
def test_exporter_missing_service(k8s, kw, reason):
    with pytest.raises(Exception, match=reason):
        read_exporter(connect(k8s.kubeconfig_path), settings(**kw))


def test_exporter_refused_by_rbac_names_the_permission(k8s):
    k8s.forbid("get", "services/proxy")
    with pytest.raises(Exception, match="RBAC: get services/proxy"):
        read_exporter(connect(k8s.kubeconfig_path), settings())
