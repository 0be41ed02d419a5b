"""A fake NVIDIA DCGM exporter and a fake PromQL query API, with faults, over real HTTP.

* ``GET /metrics`` answers what dcgm-exporter answers: Prometheus text written by
  ``prometheus_client`` (``# HELP``/``# TYPE`` lines, one gauge family per DCGM field) with
  the exporter's labels ``gpu``, ``UUID``, ``pci_bus_id``, ``device``, ``modelName``,
  ``Hostname``, ``DCGM_FI_DRIVER_VERSION`` and, for a GPU a pod holds, ``container``,
  ``namespace``, ``pod``.
* ``GET /api/v1/query?query=...`` answers like Managed Service for Prometheus: a
  ``vector`` of the same series, with the labels GKE adds (``project_id``, ``location``,
  ``cluster``); a ``cluster="..."`` matcher in the query keeps that cluster's series only.
  ``seen_auth`` and ``queries`` record what clients sent.
* ``fault``: ``None``, ``"down"`` (connection closed without an answer), ``"slow"``
  (answers after ``slow_s``), ``"garbage"`` (an HTML error page), ``"refuse"`` (HTTP 403).
"""

from __future__ import annotations

import json
import re
import threading
import time
import zlib
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily

# field -> (help text as dcgm-exporter's default-counters.csv has it, GpuSpec attribute)
FIELDS = {
    "DCGM_FI_DEV_GPU_UTIL": ("GPU utilization (in %).", "util"),
    "DCGM_FI_DEV_FB_FREE": ("Framebuffer memory free (in MiB).", "fb_free"),
    "DCGM_FI_DEV_FB_USED": ("Framebuffer memory used (in MiB).", "fb_used"),
    "DCGM_FI_DEV_GPU_TEMP": ("GPU temperature (in C).", "temp"),
    "DCGM_FI_DEV_POWER_USAGE": ("Power draw (in W).", "power"),
    "DCGM_FI_DEV_XID_ERRORS": ("Value of the last XID error encountered.", "xid"),
    "DCGM_FI_DEV_SM_CLOCK": ("SM clock frequency (in MHz).", "sm_clock"),
}
BASE_LABELS = ("gpu", "UUID", "pci_bus_id", "device", "modelName", "Hostname",
               "DCGM_FI_DRIVER_VERSION")  # fmt: skip
POD_LABELS = ("container", "namespace", "pod")


@dataclass
class GpuSpec:
    """One GPU the fake reports (an L4 by default)."""

    node: str
    index: int = 0
    model: str = "NVIDIA L4"
    util: float = 0.0
    fb_used: float = 0.0
    fb_free: float = 22_491.0
    temp: float = 40.0
    power: float = 16.5
    xid: float = 0.0
    sm_clock: float = 210.0
    pod: str = ""
    namespace: str = ""
    container: str = ""
    cluster: str = "llm-cluster"

    @property
    def uuid(self) -> str:
        return f"GPU-{zlib.crc32(f'{self.node}/{self.index}'.encode()):08x}-7c1e-4a5b-9d2f-0a1b2c3d4e5f"

    def labels(self) -> dict[str, str]:
        out = {
            "gpu": str(self.index),
            "UUID": self.uuid,
            "pci_bus_id": f"00000000:00:{4 + self.index:02X}.0",
            "device": f"nvidia{self.index}",
            "modelName": self.model,
            "Hostname": self.node,
            "DCGM_FI_DRIVER_VERSION": "535.183.01",
        }
        if self.pod:
            out.update(container=self.container, namespace=self.namespace, pod=self.pod)
        return out


class _Collector:
    def __init__(self, gpus: list[GpuSpec]) -> None:
        self.gpus = gpus

    def collect(self):
        for name, (help_text, attr) in FIELDS.items():
            family = GaugeMetricFamily(name, help_text, labels=[*BASE_LABELS, *POD_LABELS])
            for g in self.gpus:
                labels = g.labels()
                values = [labels.get(k, "") for k in (*BASE_LABELS, *POD_LABELS)]
                family.add_metric(values, getattr(g, attr))
            yield family


def exporter_text(gpus: list[GpuSpec]) -> str:
    """The exporter's /metrics body for ``gpus`` (empty pod labels left out, as it does)."""
    registry = CollectorRegistry()
    registry.register(_Collector(gpus))
    text = generate_latest(registry).decode()
    return re.sub(r',(container|namespace|pod)=""', "", text)


def promql_answer(gpus: list[GpuSpec], query: str, project: str = "demo-project") -> dict:
    """A Managed Service for Prometheus instant-query answer for ``query``."""
    wanted = set(re.findall(r"(DCGM_FI_[A-Z_]+)", query))
    cluster = re.search(r'cluster="([^"]*)"', query)
    result = []
    for g in gpus:
        if cluster and g.cluster != cluster.group(1):
            continue
        for name, (_, attr) in FIELDS.items():
            if name not in wanted:
                continue
            metric = {"__name__": name, **g.labels(), "project_id": project,
                      "location": "us-central1", "cluster": g.cluster}  # fmt: skip
            result.append({"metric": metric, "value": [time.time(), str(getattr(g, attr))]})
    return {"status": "success", "data": {"resultType": "vector", "result": result}}


@dataclass
class FakeDcgm:
    """The state the server answers from; change it between requests."""

    gpus: list[GpuSpec] = field(default_factory=list)
    fault: str | None = None
    slow_s: float = 3.0
    seen_auth: list[str | None] = field(default_factory=list)
    queries: list[str] = field(default_factory=list)


def _handler(state: FakeDcgm):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

        def _send(self, code: int, body: bytes, ctype: str) -> None:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:  # noqa: N802
            url = urlparse(self.path)
            state.seen_auth.append(self.headers.get("Authorization"))
            if state.fault == "down":
                self.close_connection = True
                return
            if state.fault == "slow":
                time.sleep(state.slow_s)
            if state.fault == "garbage":
                self._send(200, b"<html><body>502 Bad Gateway</body></html>", "text/html")
            elif state.fault == "refuse":
                self._send(403, b'{"error": "permission denied"}', "application/json")
            elif url.path == "/metrics":
                body = exporter_text(state.gpus).encode()
                self._send(200, body, "text/plain; version=0.0.4; charset=utf-8")
            elif url.path.endswith("/api/v1/query"):
                query = parse_qs(url.query).get("query", [""])[0]
                state.queries.append(query)
                body = json.dumps(promql_answer(state.gpus, query)).encode()
                self._send(200, body, "application/json")
            else:
                self._send(404, b"404 page not found", "text/plain")

    return Handler


class FakeDcgmServer:
    """Serves a ``FakeDcgm`` on 127.0.0.1; ``url`` is its base URL. A context manager."""

    def __init__(self, state: FakeDcgm | None = None) -> None:
        self.state = state or FakeDcgm()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self.state))
        self._httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self.query_url = (
            self.url + "/v1/projects/demo-project/location/global/prometheus/api/v1/query"
        )
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def __enter__(self) -> FakeDcgmServer:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)
