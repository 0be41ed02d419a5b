"""A fake GKE API (container.googleapis.com v1 REST) for the node-pool tests.

It speaks the subset of the v1 REST surface that ``ClusterManagerClient`` with
``transport="rest"`` sends for our calls (paths read from the library's
``rest_base.py``; bodies are proto3 JSON with camelCase names):

    GET  /v1/projects/P/locations/L/clusters/C/nodePools
    GET  /v1/projects/P/locations/L/clusters/C/nodePools/NP
    POST /v1/projects/P/locations/L/clusters/C/nodePools/NP:setSize         {"nodeCount": n}
    POST /v1/projects/P/locations/L/clusters/C/nodePools/NP:setAutoscaling  {"autoscaling": {...}}
    GET  /v1/projects/P/locations/L/operations/OP
    GET  /compute/v1/projects/P/regions/R    (Compute Engine: the region and its quotas)

Behaviour copied from GKE: mutations return a long-running Operation that is
RUNNING until it finishes (after ``op_polls`` GETs of the operation and
``op_delay_s`` seconds, or never while ``hold_operations`` is set); only one
operation per cluster may run, a second one gets HTTP 400 FAILED_PRECONDITION
"Cluster is running incompatible operation operation-...". The change is
applied when the operation completes. ``deny`` makes every call 403, and
``fail_next`` injects one error response. The Compute Engine region (``add_region``) is
served from the same address (``COMPUTE_API_ENDPOINT``): ``deny_quota`` refuses it alone
(403 as Compute sends it), ``garbage_region`` answers it with that text instead.
"""

from __future__ import annotations

import itertools
import json
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

_CLUSTER = r"/v1/projects/(?P<p>[^/]+)/locations/(?P<l>[^/]+)/clusters/(?P<c>[^/:]+)"
_ROUTES = [
    ("GET", re.compile(_CLUSTER + r"/nodePools$"), "list_pools"),
    ("GET", re.compile(_CLUSTER + r"/nodePools/(?P<np>[^/:]+)$"), "get_pool"),
    ("POST", re.compile(_CLUSTER + r"/nodePools/(?P<np>[^/:]+):setSize$"), "set_size"),
    (
        "POST",
        re.compile(_CLUSTER + r"/nodePools/(?P<np>[^/:]+):setAutoscaling$"),
        "set_autoscaling",
    ),
    (
        "GET",
        re.compile(r"/v1/projects/(?P<p>[^/]+)/locations/(?P<l>[^/]+)/operations/(?P<op>[^/:]+)$"),
        "get_operation",
    ),
    ("GET", re.compile(r"/compute/v1/projects/(?P<p>[^/]+)/regions/(?P<r>[^/]+)$"), "get_region"),
]


def gpu_pool(
    name: str = "gpu-pool",
    *,
    machine_type: str = "g2-standard-8",
    accelerator: str = "nvidia-l4",
    accelerator_count: int = 1,
    spot: bool = True,
    autoscaling: tuple[int, int] | None = (0, 2),
    initial_node_count: int = 1,
    locations: tuple[str, ...] = (),
    total_limits: bool = False,
) -> dict[str, Any]:
    """A node pool resource as GKE returns it (the tutorial's spot L4 pool by default).

    ``total_limits``: autoscaling bounds for the whole pool (``--total-max-nodes``, what
    scripts/setup_gke.sh creates) instead of per zone; ``locations``: its zones."""
    pool: dict[str, Any] = {
        "name": name,
        "config": {
            "machineType": machine_type,
            "diskSizeGb": 100,
            "spot": spot,
        },
        "initialNodeCount": initial_node_count,
        "status": "RUNNING",
        "version": "1.33.5-gke.1000000",
    }
    if accelerator:
        # int64 fields travel as JSON strings in proto3 JSON
        pool["config"]["accelerators"] = [
            {"acceleratorCount": str(accelerator_count), "acceleratorType": accelerator}
        ]
    if locations:
        pool["locations"] = list(locations)
    if autoscaling is not None:
        prefix = "total" if total_limits else ""
        pool["autoscaling"] = {
            "enabled": True,
            ("totalMinNodeCount" if prefix else "minNodeCount"): autoscaling[0],
            ("totalMaxNodeCount" if prefix else "maxNodeCount"): autoscaling[1],
            "locationPolicy": "ANY",
        }
    return pool


def default_pool() -> dict[str, Any]:
    """The CPU default pool every GKE standard cluster has."""
    return gpu_pool("default-pool", machine_type="e2-standard-4", accelerator="", spot=False,
                    autoscaling=None, initial_node_count=3)  # fmt: skip


@dataclass
class _Operation:
    name: str
    project: str
    location: str
    cluster: str
    op_type: str
    target: str
    apply: Any  # callable run once when the operation finishes
    started: float
    polls: int = 0
    status: str = "RUNNING"
    error: dict[str, Any] | None = None
    fail_with: str | None = None

    def json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "name": self.name,
            "zone": self.location,
            "location": self.location,
            "operationType": self.op_type,
            "status": self.status,
            "selfLink": f"/v1/projects/{self.project}/locations/{self.location}/operations/{self.name}",
            "targetLink": self.target,
            "startTime": "2025-01-01T00:00:00Z",
        }
        if self.status == "DONE":
            body["endTime"] = "2025-01-01T00:01:00Z"
        if self.error:
            body["error"] = self.error
        return body


@dataclass
class FakeGke:
    """State of the fake API; tests poke it directly (it is shared with the server thread)."""

    pools: dict[tuple[str, str, str], dict[str, dict[str, Any]]] = field(default_factory=dict)
    op_polls: int = 1  # GETs of an operation before it reports DONE
    op_delay_s: float = 0.0  # and at least this much time
    hold_operations: bool = False  # keep operations RUNNING until finish_all()
    deny: bool = False  # answer 403 PERMISSION_DENIED to everything
    fail_operation_with: str | None = None  # next operation ends DONE with this error
    requests: list[dict[str, Any]] = field(default_factory=list)
    operations: dict[str, _Operation] = field(default_factory=dict)
    node_counts: dict[str, int] = field(default_factory=dict)  # pool name -> current size
    regions: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    deny_quota: bool = False  # 403 on the Compute region only
    garbage_region: str | None = None  # answer the region with this text (HTTP 200)
    _injected: list[tuple[int, str, str]] = field(default_factory=list)
    _lock: threading.RLock = field(default_factory=threading.RLock)
    _ids: Any = field(default_factory=lambda: itertools.count(1))

    def add_cluster(self, project: str, location: str, cluster: str, *pools: dict) -> None:
        """Create a cluster with these node pools."""
        with self._lock:
            self.pools[(project, location, cluster)] = {p["name"]: p for p in pools}
            for p in pools:
                self.node_counts[p["name"]] = int(p.get("initialNodeCount", 0))

    def add_region(self, project: str, region: str, quotas: dict[str, tuple[float, float]]) -> None:
        """A Compute Engine region whose ``quotas`` are metric -> (limit, usage)."""
        with self._lock:
            self.regions[(project, region)] = {
                "kind": "compute#region",
                "id": "1000",
                "name": region,
                "status": "UP",
                "zones": [f"https://www.googleapis.com/compute/v1/projects/{project}/zones/"
                          f"{region}-{z}" for z in "abc"],
                "quotas": [{"metric": m, "limit": float(lim), "usage": float(use)}
                           for m, (lim, use) in quotas.items()],
                "selfLink": f"https://www.googleapis.com/compute/v1/projects/{project}/regions/{region}",
            }  # fmt: skip

    def fail_next(self, status: int, grpc_status: str, message: str) -> None:
        """Make the next request fail with this HTTP status and google.rpc status."""
        with self._lock:
            self._injected.append((status, grpc_status, message))

    def finish_all(self) -> None:
        """Complete every running operation now (used with hold_operations)."""
        with self._lock:
            self.hold_operations = False
            for op in self.operations.values():
                self._complete(op)

    def running_operation(self, key: tuple[str, str, str]) -> _Operation | None:
        """The RUNNING operation on a cluster, if any."""
        with self._lock:
            for op in self.operations.values():
                if op.status == "RUNNING" and (op.project, op.location, op.cluster) == key:
                    return op
        return None

    # --- request handling (called by the HTTP handler) ---

    def handle(self, method: str, path: str, query: dict, body: dict | None) -> tuple[int, Any]:
        with self._lock:
            self.requests.append({"method": method, "path": path, "query": query, "body": body})
            if self._injected:
                status, grpc_status, message = self._injected.pop(0)
                return _error(status, grpc_status, message)
            if self.deny:
                return _error(
                    403,
                    "PERMISSION_DENIED",
                    "Required 'container.clusters.update' permission for 'projects/x'.",
                )
            for m, rx, action in _ROUTES:
                match = rx.match(path)
                if m == method and match:
                    return getattr(self, "_" + action)(match.groupdict(), body or {})
            return _error(404, "NOT_FOUND", f"no route for {method} {path}")

    def _get_region(self, g: dict, _body: dict) -> tuple[int, Any]:
        if self.deny_quota:
            message = f"Required 'compute.regions.get' permission for 'projects/{g['p']}/regions/{g['r']}'"
            return 403, {"error": {"code": 403, "message": message,
                                   "errors": [{"message": message, "domain": "global",
                                               "reason": "forbidden"}]}}  # fmt: skip
        if self.garbage_region is not None:
            return 200, self.garbage_region
        region = self.regions.get((g["p"], g["r"]))
        if region is None:
            return _error(
                404, "NOT_FOUND", f"The resource 'projects/{g['p']}/regions/{g['r']}' was not found"
            )
        return 200, region

    def _cluster(self, g: dict) -> dict[str, dict] | None:
        return self.pools.get((g["p"], g["l"], g["c"]))

    def _pool(self, g: dict) -> tuple[dict | None, tuple[int, dict] | None]:
        pools = self._cluster(g)
        if pools is None:
            return None, _not_found(g)
        pool = pools.get(g["np"])
        if pool is None:
            return None, _not_found(g, g["np"])
        return pool, None

    def _list_pools(self, g: dict, _body: dict) -> tuple[int, dict]:
        pools = self._cluster(g)
        if pools is None:
            return _not_found(g)
        return 200, {"nodePools": list(pools.values())}

    def _get_pool(self, g: dict, _body: dict) -> tuple[int, dict]:
        pool, err = self._pool(g)
        return err or (200, pool)

    def _start(self, g: dict, op_type: str, apply) -> tuple[int, dict]:
        key = (g["p"], g["l"], g["c"])
        busy = self.running_operation(key)
        if busy is not None:
            return _error(
                400,
                "FAILED_PRECONDITION",
                f"Cluster is running incompatible operation {busy.name}.",
            )
        name = f"operation-{1700000000000 + next(self._ids)}-fake{len(self.operations):04d}"
        target = f"/v1/projects/{g['p']}/locations/{g['l']}/clusters/{g['c']}"
        if "np" in g:
            target += f"/nodePools/{g['np']}"
        op = _Operation(name, g["p"], g["l"], g["c"], op_type, target, apply, time.monotonic())
        op.fail_with, self.fail_operation_with = self.fail_operation_with, None
        self.operations[name] = op
        return 200, op.json()

    def _set_size(self, g: dict, body: dict) -> tuple[int, dict]:
        pool, err = self._pool(g)
        if err:
            return err
        n = int(body.get("nodeCount", 0))  # proto3 JSON omits zero
        if n < 0:
            return _error(400, "INVALID_ARGUMENT", "nodeCount must be >= 0.")

        def apply() -> None:
            self.node_counts[pool["name"]] = n

        return self._start(g, "SET_NODE_POOL_SIZE", apply)

    def _set_autoscaling(self, g: dict, body: dict) -> tuple[int, dict]:
        pool, err = self._pool(g)
        if err:
            return err
        a = body.get("autoscaling", {})
        enabled = bool(a.get("enabled", False))
        lo, hi = int(a.get("minNodeCount", 0)), int(a.get("maxNodeCount", 0))
        if enabled and (lo < 0 or hi < 1 or lo > hi):
            return _error(
                400,
                "INVALID_ARGUMENT",
                "Autoscaling requires 0 <= minNodeCount <= maxNodeCount and maxNodeCount >= 1.",
            )

        def apply() -> None:
            if enabled:
                pool["autoscaling"] = {
                    "enabled": True,
                    "minNodeCount": lo,
                    "maxNodeCount": hi,
                    "locationPolicy": "ANY",
                }
            else:
                pool.pop("autoscaling", None)

        return self._start(g, "UPDATE_CLUSTER", apply)

    def _get_operation(self, g: dict, _body: dict) -> tuple[int, dict]:
        op = self.operations.get(g["op"])
        if op is None or (op.project, op.location) != (g["p"], g["l"]):
            return _error(404, "NOT_FOUND", f"Not found: operation {g['op']!r}.")
        op.polls += 1
        if (
            op.status == "RUNNING"
            and not self.hold_operations
            and op.polls >= self.op_polls
            and time.monotonic() - op.started >= self.op_delay_s
        ):
            self._complete(op)
        return 200, op.json()

    def _complete(self, op: _Operation) -> None:
        if op.status == "DONE":
            return
        op.status = "DONE"
        if op.fail_with:
            op.error = {"code": 9, "message": op.fail_with}
        else:
            op.apply()


def _error(status: int, grpc_status: str, message: str) -> tuple[int, dict]:
    return status, {"error": {"code": status, "message": message, "status": grpc_status}}


def _not_found(g: dict, pool: str | None = None) -> tuple[int, dict]:
    """GKE's 404 names the full resource path of what is missing."""
    path = f"projects/{g['p']}/locations/{g['l']}/clusters/{g['c']}"
    return _error(404, "NOT_FOUND", f"Not found: {path}" + (f"/nodePools/{pool}." if pool else "."))


def _enum_tables() -> dict[str, dict[str, int]]:
    from google.cloud.container_v1.types import cluster_service as cs

    return {
        "status": {**{e.name: e.value for e in cs.NodePool.Status},
                   **{e.name: e.value for e in cs.Operation.Status}},
        "operationType": {e.name: e.value for e in cs.Operation.Type},
        "locationPolicy": {e.name: e.value for e in cs.NodePoolAutoscaling.LocationPolicy},
    }  # fmt: skip


def _int_enums(value: Any, tables: dict[str, dict[str, int]] | None = None) -> Any:
    """Proto3 JSON with enums as numbers (the client asks for ``enum-encoding=int``)."""
    tables = tables or _enum_tables()
    if isinstance(value, dict):
        return {
            k: tables[k].get(v, v) if k in tables and isinstance(v, str) else _int_enums(v, tables)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_int_enums(v, tables) for v in value]
    return value


class _Handler(BaseHTTPRequestHandler):
    fake: FakeGke  # set on a subclass per server

    def _serve(self, method: str) -> None:
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        query = parse_qs(parts.query)
        status, payload = self.fake.handle(method, parts.path, query, body)
        if status == 200 and "enum-encoding=int" in " ".join(query.get("$alt", [])):
            payload = _int_enums(payload)  # what GKE does for the client's $alt parameter
        data = payload.encode() if isinstance(payload, str) else json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=UTF-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # noqa: N802 (http.server naming)
        self._serve("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._serve("POST")

    def log_message(self, *args) -> None:  # keep test output clean
        pass


class FakeGkeServer:
    """Runs a FakeGke on 127.0.0.1 in a background thread. Use as a context manager."""

    def __init__(self, fake: FakeGke | None = None) -> None:
        self.fake = fake or FakeGke()
        handler = type("Handler", (_Handler,), {"fake": self.fake})
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def endpoint(self) -> str:
        """Base URL to pass as the client's api_endpoint (plain http)."""
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> FakeGkeServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> FakeGkeServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
