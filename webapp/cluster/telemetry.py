"""Per-GPU telemetry (utilization, memory, temperature, power, XID) from NVIDIA DCGM.

Two sources, tried in this order (README "GPU telemetry"):

1. **GKE managed DCGM metrics** in Google Cloud Managed Service for Prometheus, read with
   one PromQL instant query over its HTTP API
   (``https://monitoring.googleapis.com/v1/projects/PROJECT/location/global/prometheus/api/v1/query``,
   or ``GPU_PROMETHEUS_URL``), authenticated with the pod's Google credentials (Workload
   Identity; ``roles/monitoring.viewer``). GKE turns it on with
   ``--enable-managed-prometheus --monitoring=SYSTEM,DCGM,DEPLOYMENT`` (DEPLOYMENT: the pools'
   scale to zero, ``keda_objects``). It exports no XID field.
2. **An NVIDIA DCGM exporter in the cluster**, read through the Kubernetes API's service
   proxy (``.../namespaces/NS/services/NAME:PORT/proxy/metrics``), so the admin pod needs
   no network path of its own, only RBAC ``get`` on ``services/proxy`` for that Service.
   A Service proxy reaches one exporter pod per request: with several GPU nodes it shows
   the GPUs of the node that answered; the managed source shows them all.

The exporter's text is parsed with ``prometheus_client``'s parser. Series are joined per
GPU on (``Hostname``, ``gpu``, ``UUID``); the pod using a GPU comes from the exporter's
``pod``/``namespace``/``container`` labels (``exported_*`` when a scraper renamed them).
Failures become ``TelemetryUnavailable`` with a plain reason per source and the command
that turns it on; no token or response body is logged or kept.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from webapp.cluster import k8s
from webapp.cluster.errors import (
    ClusterError,
    ClusterUnavailable,
    Forbidden,
    NoGoogleCredentials,
    NotFound,
    SourceFailure,
    TelemetryUnavailable,
)
from webapp.cluster.google_auth import bearer_token

UTIL = "DCGM_FI_DEV_GPU_UTIL"  # %
FB_USED = "DCGM_FI_DEV_FB_USED"  # MiB
FB_FREE = "DCGM_FI_DEV_FB_FREE"  # MiB
TEMP = "DCGM_FI_DEV_GPU_TEMP"  # degrees C
POWER = "DCGM_FI_DEV_POWER_USAGE"  # W
XID = "DCGM_FI_DEV_XID_ERRORS"  # value of the last XID error; 0: none
FIELDS = {UTIL: "util_pct", FB_USED: "fb_used_mib", FB_FREE: "fb_free_mib", TEMP: "temp_c",
          POWER: "power_w", XID: "xid"}  # fmt: skip

MANAGED = "GKE managed DCGM metrics (Managed Service for Prometheus)"
EXPORTER = "DCGM exporter in the cluster"
MONITORING_READ = "https://www.googleapis.com/auth/monitoring.read"
GMP_QUERY_URL = "https://monitoring.googleapis.com/v1/projects/{project}/location/global/prometheus/api/v1/query"


@dataclass(frozen=True)
class GpuSample:
    """One GPU's latest figures; None where the source has no such field."""

    node: str
    gpu: str  # index on the node, as DCGM numbers it
    uuid: str = ""
    model_name: str = ""
    pod: str = ""  # the pod using the GPU, as DCGM attributes it ("" when idle)
    namespace: str = ""
    container: str = ""
    util_pct: float | None = None
    fb_used_mib: float | None = None
    fb_free_mib: float | None = None
    temp_c: float | None = None
    power_w: float | None = None
    xid: float | None = None

    @property
    def fb_total_mib(self) -> float | None:
        if self.fb_used_mib is None or self.fb_free_mib is None:
            return None
        return self.fb_used_mib + self.fb_free_mib

    @property
    def memory_used_frac(self) -> float | None:
        total = self.fb_total_mib
        return self.fb_used_mib / total if total else None


@dataclass(frozen=True)
class Telemetry:
    """What one source said: its GPUs, and why the sources tried before it gave nothing."""

    source: str
    gpus: tuple[GpuSample, ...]
    skipped: tuple[SourceFailure, ...] = ()


class _Garbage(ValueError):
    """A source answered with something that is not what it should send."""


class _Unavailable(Exception):
    """A source is off, down, slow or refused us: its plain reason."""


# ---------------------------------------------------------------- pure parsing


def _label(labels: Mapping[str, str], *names: str) -> str:
    return next((str(labels[n]) for n in names if labels.get(n)), "")


def _key(labels: Mapping[str, str]) -> tuple[str, str, str]:
    node = _label(labels, "Hostname", "node", "kubernetes_node")
    return node, _label(labels, "gpu"), _label(labels, "UUID", "uuid")


def gpus_from_series(series: Iterable[tuple[str, Mapping[str, str], float]]) -> list[GpuSample]:
    """Join (metric name, labels, value) series into one ``GpuSample`` per GPU.

    Pure. Unknown metrics are ignored; NaN is "no value"; a GPU that changed hands has one
    series per pod: the one naming a pod wins. Sorted by node, then GPU index.
    """
    by_gpu: dict[tuple[str, str, str], GpuSample] = {}
    for name, labels, value in series:
        field = FIELDS.get(name)
        if field is None:
            continue
        key = _key(labels)
        gpu = by_gpu.get(key) or GpuSample(node=key[0], gpu=key[1], uuid=key[2])
        pod = _label(labels, "exported_pod", "pod")
        if not pod and gpu.pod and getattr(gpu, field) is not None:
            continue  # the holder's figure stands over a stale unattributed one
        if pod and not gpu.pod:
            gpu = replace(
                gpu,
                pod=pod,
                namespace=_label(labels, "exported_namespace", "namespace"),
                container=_label(labels, "exported_container", "container"),
            )
        if not gpu.model_name:
            gpu = replace(gpu, model_name=_label(labels, "modelName"))
        by_gpu[key] = replace(gpu, **{field: None if math.isnan(value) else float(value)})
    return sorted(by_gpu.values(), key=lambda g: (g.node, _index(g.gpu), g.uuid))


def _index(gpu: str) -> tuple[int, str]:
    return (int(gpu), "") if gpu.isdigit() else (1 << 30, gpu)


def parse_exporter_text(text: str) -> list[GpuSample]:
    """GPUs from a DCGM exporter's ``/metrics`` text; ``_Garbage`` when it holds none."""
    try:
        families = list(text_string_to_metric_families(text))
    except ValueError:
        raise _Garbage("its answer is not Prometheus metrics text") from None
    gpus = gpus_from_series((s.name, s.labels, float(s.value)) for f in families for s in f.samples)
    if not gpus:
        raise _Garbage("its answer holds no DCGM GPU metrics")
    return gpus


def parse_promql_vector(payload: Any) -> list[GpuSample]:
    """GPUs from a PromQL instant-query answer (``resultType: vector``); ``_Garbage`` if the
    answer is not one. An empty vector gives an empty list."""
    if not isinstance(payload, dict):
        raise _Garbage("its answer is not a PromQL result")
    if payload.get("status") != "success":
        raise _Garbage(f"the query failed ({str(payload.get('errorType') or 'error')[:40]})")
    data = payload.get("data")
    if not isinstance(data, dict) or data.get("resultType") != "vector":
        raise _Garbage("its answer is not a PromQL vector")
    series = []
    for item in data.get("result") or []:
        try:
            labels = {str(k): str(v) for k, v in item["metric"].items()}
            value = float(item["value"][1])
        except (KeyError, IndexError, TypeError, ValueError, AttributeError):
            raise _Garbage("its answer holds a malformed sample") from None
        series.append((labels.get("__name__", ""), labels, value))
    return gpus_from_series(series)


def promql_query(cluster_name: str = "") -> str:
    """One instant query for every field, limited to ``cluster_name`` when given
    (``or`` keeps each series' metric name)."""
    matcher = f'{{cluster="{_promql_string(cluster_name)}"}}' if cluster_name else ""
    return " or ".join(f"{name}{matcher}" for name in FIELDS)


def _promql_string(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def managed_url(settings: Any) -> str:
    """GPU_PROMETHEUS_URL, else the Managed Service for Prometheus query URL of GKE_PROJECT;
    "" when neither is set."""
    if settings.gpu_prometheus_url:
        return settings.gpu_prometheus_url.rstrip("/")
    if settings.gke_project:
        return GMP_QUERY_URL.format(project=settings.gke_project)
    return ""


def turn_on_managed(settings: Any) -> str:
    """The commands that give source 1 on GKE (also what scripts/setup_gke.sh runs)."""
    cluster = settings.gke_cluster or "CLUSTER"
    location = settings.gke_location or "LOCATION"
    project = settings.gke_project or "PROJECT"
    where = f"{cluster} --location={location} --project={project}"
    return (
        f"gcloud container clusters update {where} --enable-managed-prometheus; "
        f"gcloud container clusters update {where} --monitoring=SYSTEM,DCGM,DEPLOYMENT; "
        f"gcloud projects add-iam-policy-binding {project} "
        "--member=serviceAccount:ADMIN_GSA --role=roles/monitoring.viewer "
        "(or run scripts/setup_gke.sh)"
    )


def turn_on_exporter(settings: Any) -> str:
    """What gives source 2: an exporter Service where the settings point, and the RBAC."""
    ns, svc = settings.dcgm_exporter_namespace, settings.dcgm_exporter_service
    return (
        f"deploy NVIDIA's DCGM exporter as Service {ns}/{svc} port "
        f"{settings.dcgm_exporter_port} (the NVIDIA GPU Operator does: `helm install "
        f"gpu-operator nvidia/gpu-operator -n {ns} --create-namespace`) or set "
        "DCGM_EXPORTER_NAMESPACE/SERVICE/PORT to yours, then `kubectl apply -k` the console's "
        "manifests (RBAC: get services/proxy on it)"
    )


# ---------------------------------------------------------------- the two sources


def read_managed(
    settings: Any, *, credentials: Any = None, client: httpx.Client | None = None
) -> list[GpuSample]:
    """Source 1: one PromQL query to Managed Service for Prometheus. ``credentials``: Google
    credentials (default: ``google.auth.default`` with the monitoring.read scope)."""
    url = managed_url(settings)
    if not url:
        raise _Unavailable("GKE_PROJECT (or GPU_PROMETHEUS_URL) is not set")
    timeout = settings.gpu_telemetry_timeout_s
    headers = {"Authorization": f"Bearer {_token(credentials)}"}
    params = {"query": promql_query(settings.gke_cluster)}
    try:
        get = client.get if client is not None else httpx.get
        r = get(url, params=params, headers=headers, timeout=timeout)
    except httpx.TimeoutException:
        raise _Unavailable(f"it did not answer within {timeout:g} s") from None
    except httpx.HTTPError as exc:
        raise _Unavailable(f"it cannot be reached ({type(exc).__name__})") from None
    if r.status_code in (401, 403):
        raise _Unavailable(
            f"it refused the query (HTTP {r.status_code}): the admin's Google service "
            "account needs roles/monitoring.viewer"
        )
    if r.status_code == 404:
        raise _Unavailable("no Prometheus query API at that address (HTTP 404)")
    try:
        payload = r.json()
    except ValueError:
        raise _Garbage(f"its answer is not a PromQL result (HTTP {r.status_code})") from None
    gpus = parse_promql_vector(payload)
    if not gpus:
        raise _Unavailable(
            "it holds no DCGM series for this cluster: DCGM metrics are off, or no GPU node "
            "is running (a pool scaled to zero)"
        )
    return gpus


def _token(credentials: Any) -> str:
    try:
        return bearer_token(credentials, (MONITORING_READ,))
    except NoGoogleCredentials as exc:
        raise _Unavailable(
            f"no usable Google credentials ({exc}): Workload Identity or "
            "GOOGLE_APPLICATION_CREDENTIALS"
        ) from None


def read_exporter(cluster: Any, settings: Any) -> list[GpuSample]:
    """Source 2: the DCGM exporter's /metrics through the Kubernetes API service proxy."""
    ns, svc = settings.dcgm_exporter_namespace, settings.dcgm_exporter_service
    name = f"{svc}:{settings.dcgm_exporter_port}"
    timeout = settings.gpu_telemetry_timeout_s
    try:
        text = k8s.call(
            f"read {ns}/{name} through the service proxy",
            k8s.no_retry_core(cluster).connect_get_namespaced_service_proxy_with_path,
            name, ns, "metrics", text=True, _request_timeout=(timeout, timeout),
        )  # fmt: skip
    except NotFound:
        raise _Unavailable(f"there is no Service {svc} in namespace {ns}") from None
    except Forbidden:
        raise _Unavailable(
            f"the console may not read Service {ns}/{name} through the proxy (RBAC: get "
            "services/proxy)"
        ) from None
    except ClusterUnavailable as exc:
        raise _Unavailable(_proxy_reason(str(exc), timeout)) from None
    except ClusterError as exc:
        raise _Unavailable(f"the Kubernetes API refused: {type(exc).__name__}") from None
    return parse_exporter_text(text)


def _proxy_reason(message: str, timeout: float) -> str:
    if "Timeout" in message:
        return f"it did not answer within {timeout:g} s"
    if "HTTP 503" in message or "HTTP 502" in message:
        return "the Service has no exporter pod answering (HTTP 503)"
    if "cannot reach" in message:
        return "the Kubernetes API cannot be reached"
    return "the Kubernetes API could not read it"


def read_gpu_telemetry(
    settings: Any,
    cluster: Any = None,
    *,
    credentials: Any = None,
    client: httpx.Client | None = None,
) -> Telemetry:
    """Per-GPU telemetry from the first source that gives it (managed, then exporter).

    Raises ``TelemetryUnavailable`` naming, per source, why it gave nothing and what turns
    it on. ``cluster`` None (no cluster connected) skips the exporter source.
    """
    failures: list[SourceFailure] = []
    try:
        gpus = read_managed(settings, credentials=credentials, client=client)
        return Telemetry(MANAGED, tuple(gpus))
    except (_Unavailable, _Garbage) as exc:
        failures.append(SourceFailure(MANAGED, str(exc), turn_on_managed(settings)))
    if cluster is None:
        reason = "no Kubernetes cluster is connected"
        failures.append(SourceFailure(EXPORTER, reason, turn_on_exporter(settings)))
        raise TelemetryUnavailable(tuple(failures))
    try:
        gpus = read_exporter(cluster, settings)
        return Telemetry(EXPORTER, tuple(gpus), tuple(failures))
    except (_Unavailable, _Garbage) as exc:
        failures.append(SourceFailure(EXPORTER, str(exc), turn_on_exporter(settings)))
    raise TelemetryUnavailable(tuple(failures))
