"""A small fake Kubernetes API server for tests and benchmarks.

The REAL ``kubernetes`` Python client talks to it over HTTP through a generated
kubeconfig (``FakeCluster.kubeconfig_path``). Objects live in memory; a
controller thread simulates what the real control plane would do for a vLLM
Deployment on a GPU node pool:

* Deployment -> ReplicaSet (one per template hash) -> Pods; ``Recreate`` deletes old
  pods before the new ReplicaSet is scaled up, ``RollingUpdate`` surges then retires;
* a scheduler that places pods on nodes with free ``nvidia.com/gpu`` matching the
  nodeSelector, or leaves them Pending (PodScheduled=False, Unschedulable) with a
  ``FailedScheduling`` event;
* a cluster autoscaler (``set_autoscaler``) that answers such a pod with GKE's events:
  ``NotTriggerScaleUp``, or ``TriggeredScaleUp`` and a new node a little later;
* a kubelet that makes containers ready after ``ready_delay`` seconds, or plays
  an injected fault (image pull error, crash loop, OOMKilled, slow start);
* Deployment status and conditions, including ``ProgressDeadlineExceeded`` after
  ``progressDeadlineSeconds * time_scale`` seconds;
* model pools (``tests/fakes/k8s_fleet.py``): Gateway API ``gateways``/``httproutes``,
  ``inferencepools``, ``horizontalpodautoscalers`` (autoscaling/v2), GKE's health-check and
  backend policies, KEDA's ``scaledobjects``/``triggerauthentications``, ``configmaps`` and
  ``deployments/NAME/scale``; the gateway controller's
  route status, an HPA controller acting on ``set_metric(ns, hpa, value)`` and a KEDA-like
  controller for ``scaledobjects`` (scale to zero after the cooldown, wake on activity).

Supported API: GET / LIST (labelSelector, fieldSelector) / WATCH (``?watch=true``,
JSON lines) / POST / PUT (resourceVersion conflict -> 409) / PATCH (json-patch,
merge-patch, strategic-merge-patch subset) / DELETE, ``pods/log``, GET on the Service proxy
(``services/NAME:PORT/proxy/PATH``, forwarded to ``proxy_to(ns, service, url)``) and on the
pod proxy (``pods/NAME:PORT/proxy/PATH``, to ``proxy_pod_to(ns, url, pod=|labels=)``); errors are
``Status`` objects (401, 403, 404, 409, 410, 415, 422). ``request_counts`` counts
requests per ``(verb, resource)`` and ``requests`` lists them (``ApiRequest``: verb, API
group, resource, namespace, name); ``forbid(verb, resource)`` answers 403, and so does any
request ``authorize(request)`` (when set, e.g. from the rendered RBAC Role) returns False for.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import os
import random
import string
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import NamedTuple
from urllib.error import URLError
from urllib.parse import parse_qs, unquote, urlparse
from urllib.request import urlopen

from tests.fakes import k8s_fleet

GPU = "nvidia.com/gpu"
ACCEL_LABEL = "cloud.google.com/gke-accelerator"
POOL_LABEL = "cloud.google.com/gke-nodepool"
SPOT_LABEL = "cloud.google.com/gke-spot"

# resource -> (group, version, namespaced, kind)
RESOURCES = {
    "namespaces": ("", "v1", False, "Namespace"),
    "nodes": ("", "v1", False, "Node"),
    "pods": ("", "v1", True, "Pod"),
    "events": ("", "v1", True, "Event"),
    "services": ("", "v1", True, "Service"),
    "secrets": ("", "v1", True, "Secret"),
    "deployments": ("apps", "v1", True, "Deployment"),
    "replicasets": ("apps", "v1", True, "ReplicaSet"),
    "leases": ("coordination.k8s.io", "v1", True, "Lease"),
    **k8s_fleet.FLEET_RESOURCES,  # model pools: Gateway API, Inference Extension, HPA
}
FAULTS = ("image_pull", "crash", "oom", "slow")


class ApiRequest(NamedTuple):
    """One API request as RBAC sees it: ``resource`` includes a subresource (``pods/log``),
    ``name`` is None for list/watch/create, ``namespace`` None for cluster-wide requests."""

    verb: str
    group: str
    resource: str
    namespace: str | None
    name: str | None


# strategic-merge-patch list merge keys (subset used by Deployments/Pods)
SMP_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "volumes": "name",
    "env": "name",
    "volumeMounts": "mountPath",
    "ports": "containerPort",
    "conditions": "type",
    "imagePullSecrets": "name",
}


def _now_iso(t: float | None = None) -> str:
    return datetime.fromtimestamp(t if t is not None else time.time(), UTC).strftime(
        "%Y-%m-%dT%H:%M:%SZ"
    )


def _rand(n: int = 5) -> str:
    return "".join(random.choices(string.ascii_lowercase + string.digits, k=n))


def _dig(obj: dict, dotted: str):
    cur = obj
    for part in dotted.split("."):
        if not isinstance(cur, dict):
            return None
        cur = cur.get(part)
    return cur


class ApiError(Exception):
    """An HTTP error answered as a Kubernetes ``Status`` object."""

    REASONS = {
        400: "BadRequest",
        401: "Unauthorized",
        403: "Forbidden",
        404: "NotFound",
        409: "Conflict",
        410: "Expired",
        415: "UnsupportedMediaType",
        422: "Invalid",
    }

    def __init__(self, code: int, message: str, reason: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.reason = reason or self.REASONS.get(code, "InternalError")

    def status(self) -> dict:
        return {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }


# ---------------------------------------------------------------- selectors & patches


def _split_top(s: str) -> list[str]:
    out, depth, cur = [], 0, ""
    for ch in s:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            out.append(cur)
            cur = ""
        else:
            cur += ch
    if cur:
        out.append(cur)
    return [p.strip() for p in out if p.strip()]


def label_matches(selector: str | None, labels: dict | None) -> bool:
    """Evaluate a label selector string (=, ==, !=, in, notin, exists, !exists)."""
    labels = labels or {}
    for req in _split_top(selector or ""):
        if " notin " in req:
            key, vals = req.split(" notin ", 1)
            if labels.get(key.strip()) in {v.strip() for v in vals.strip(" ()").split(",")}:
                return False
        elif " in " in req:
            key, vals = req.split(" in ", 1)
            if labels.get(key.strip()) not in {v.strip() for v in vals.strip(" ()").split(",")}:
                return False
        elif "!=" in req:
            key, val = req.split("!=", 1)
            if labels.get(key.strip()) == val.strip():
                return False
        elif "=" in req:
            key, val = req.replace("==", "=").split("=", 1)
            if labels.get(key.strip()) != val.strip():
                return False
        elif req.startswith("!"):
            if req[1:] in labels:
                return False
        elif req not in labels:
            return False
    return True


def field_matches(selector: str | None, obj: dict) -> bool:
    """Evaluate a field selector (``a.b=c``, ``a.b==c``, ``a.b!=c``) on dotted paths."""
    for req in _split_top(selector or ""):
        if "!=" in req:
            key, val = req.split("!=", 1)
            if str(_dig(obj, key.strip()) or "") == val.strip():
                return False
        else:
            key, val = req.replace("==", "=").split("=", 1)
            if str(_dig(obj, key.strip()) or "") != val.strip():
                return False
    return True


def merge_patch(target, patch):
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = dict(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = merge_patch(out.get(k), v)
    return out


def strategic_merge_patch(target, patch, key: str | None = None):
    """The subset of strategic merge patch this fake needs (list merge by key, $patch)."""
    if isinstance(patch, dict):
        if patch.get("$patch") == "replace":
            return {k: copy.deepcopy(v) for k, v in patch.items() if k != "$patch"}
        out = dict(target) if isinstance(target, dict) else {}
        for k, v in patch.items():
            if v is None:
                out.pop(k, None)
            else:
                out[k] = strategic_merge_patch(out.get(k), v, k)
        return out
    if isinstance(patch, list) and key in SMP_KEYS and isinstance(target, list):
        mk = SMP_KEYS[key]
        out = [copy.deepcopy(x) for x in target]
        for item in patch:
            idx = next((i for i, x in enumerate(out) if x.get(mk) == item.get(mk)), None)
            if item.get("$patch") == "delete":
                if idx is not None:
                    out.pop(idx)
            elif idx is None:
                out.append(copy.deepcopy(item))
            else:
                out[idx] = strategic_merge_patch(out[idx], item)
        return out
    return copy.deepcopy(patch)


def _pointer(path: str) -> list:
    if path == "":
        return []
    return [p.replace("~1", "/").replace("~0", "~") for p in path.lstrip("/").split("/")]


def json_patch(doc, ops: list):
    """RFC 6902 JSON patch (add, remove, replace, test)."""
    doc = copy.deepcopy(doc)
    for op in ops:
        parts = _pointer(op["path"])
        parent = doc
        for p in parts[:-1]:
            parent = parent[int(p)] if isinstance(parent, list) else parent.get(p)
            if parent is None:
                raise ApiError(422, f"json patch: path {op['path']} does not exist")
        last = parts[-1] if parts else None
        kind = op["op"]
        if kind == "test":
            cur = parent[int(last)] if isinstance(parent, list) else parent.get(last)
            if cur != op["value"]:
                raise ApiError(422, f"json patch test failed at {op['path']}")
        elif kind in ("add", "replace"):
            if isinstance(parent, list):
                i = len(parent) if last == "-" else int(last)
                if kind == "add":
                    parent.insert(i, copy.deepcopy(op["value"]))
                else:
                    parent[i] = copy.deepcopy(op["value"])
            else:
                if kind == "replace" and last not in parent:
                    raise ApiError(422, f"json patch replace: {op['path']} does not exist")
                parent[last] = copy.deepcopy(op["value"])
        elif kind == "remove":
            if isinstance(parent, list):
                parent.pop(int(last))
            elif parent.pop(last, None) is None:
                raise ApiError(422, f"json patch remove: {op['path']} does not exist")
        else:
            raise ApiError(422, f"json patch op {kind} not supported by the fake")
    return doc


# ---------------------------------------------------------------- helpers about pods


def pod_args(pod_spec: dict) -> list[str]:
    c = (pod_spec.get("containers") or [{}])[0]
    return list(c.get("command") or []) + list(c.get("args") or [])


def arg_value(args: list[str], flag: str) -> str | None:
    for i, a in enumerate(args):
        if a == flag and i + 1 < len(args):
            return args[i + 1]
        if a.startswith(flag + "="):
            return a.split("=", 1)[1]
    return None


def pod_gpus(pod_spec: dict) -> int:
    total = 0
    for c in pod_spec.get("containers") or []:
        res = c.get("resources") or {}
        val = (res.get("limits") or {}).get(GPU) or (res.get("requests") or {}).get(GPU) or 0
        total += int(val)
    return total


def _template_hash(template: dict) -> str:
    raw = json.dumps(template, sort_keys=True).encode()
    return hashlib.sha256(raw).hexdigest()[:10]


class FakeCluster:
    """In-memory Kubernetes API + controllers. Use as a context manager."""

    def __init__(
        self,
        gpu_nodes=(),
        *,
        ready_delay: float = 0.15,
        time_scale: float = 0.002,
        tick: float = 0.02,
        crash_every: float = 0.08,
        slow_factor: float = 8.0,
        token: str = "fake-token",  # noqa: S107 - a test token
        namespace: str = "vllm",
    ) -> None:
        self.ready_delay = ready_delay
        self.time_scale = time_scale
        self.tick = tick
        self.crash_every = crash_every
        self.slow_factor = slow_factor
        self.token = token
        self.namespace = namespace
        self.lock = threading.RLock()
        self.changed = threading.Condition(self.lock)
        self.objects: dict[str, dict[tuple[str, str], dict]] = {r: {} for r in RESOURCES}
        self.history: list[tuple[int, str, str, dict]] = []  # (rv, type, resource, obj)
        self.rv = 100
        self.request_counts: Counter = Counter()
        self.requests: list[ApiRequest] = []
        self.forbidden: set[tuple[str, str]] = set()
        self.authorize: Callable[[ApiRequest], bool] | None = None
        self.faults: list[tuple[str, str, str]] = []  # (field, value, kind)
        self.autoscaler: tuple[str, str, dict | None, float] = ("off", "", None, 0.0)
        self._coming_nodes: list[tuple[float, dict]] = []  # (due, add_node kwargs)
        self.pod_logs: dict[tuple[str, str], list[str]] = {}
        self.metrics: dict[tuple[str, str], float] = {}  # (ns, hpa) -> per-pod metric value
        self.keda_last_active: dict[tuple[str, str], float] = {}  # (ns, scaledobject) -> time
        self.proxy_targets: dict[tuple[str, str], str] = {}  # (ns, service) -> base URL
        self.pod_proxy_targets: dict[tuple[str, str], str] = {}  # (ns, pod) -> base URL
        self.pod_proxy_rules: list[tuple[str, dict[str, str], str]] = []  # (ns, labels, URL)
        self._pstate: dict[tuple[str, str], dict] = {}
        self._dstate: dict[tuple[str, str], dict] = {}
        self._event_index: dict[tuple, dict] = {}
        self._owners: dict[tuple[str, str, str], list] = {}
        self._stop = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._threads: list[threading.Thread] = []
        self._tmp = tempfile.mkdtemp(prefix="fake-k8s-")
        self.kubeconfig_path = os.path.join(self._tmp, "kubeconfig")
        self.create("namespaces", {"metadata": {"name": namespace}})
        for n in gpu_nodes:
            self.add_node(**n) if isinstance(n, dict) else self.add_node(n)

    # ------------------------------------------------------------ lifecycle

    def __enter__(self) -> FakeCluster:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> None:
        """Start the HTTP server and the controller thread; write the kubeconfig."""
        handler = _make_handler(self)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        t1 = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05})
        t2 = threading.Thread(target=self._control_loop)
        for t in (t1, t2):
            t.daemon = True
            t.start()
        self._threads = [t1, t2]
        kubeconfig = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "fake", "cluster": {"server": self.url}}],
            "users": [{"name": "fake", "user": {"token": self.token}}],
            "contexts": [
                {
                    "name": "fake",
                    "context": {"cluster": "fake", "user": "fake", "namespace": self.namespace},
                }
            ],
            "current-context": "fake",
        }
        with open(self.kubeconfig_path, "w") as fh:
            json.dump(kubeconfig, fh)

    def stop(self) -> None:
        """Stop threads, close the socket, delete the kubeconfig."""
        self._stop.set()
        with self.changed:
            self.changed.notify_all()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        for t in self._threads:
            t.join(timeout=5)
        for name in os.listdir(self._tmp):
            os.unlink(os.path.join(self._tmp, name))
        os.rmdir(self._tmp)

    # ------------------------------------------------------------ test helper API

    def add_node(
        self,
        name: str,
        *,
        gpus: int = 1,
        accelerator: str = "nvidia-l4",
        pool: str = "gpu-pool",
        spot: bool = True,
        ready: bool = True,
    ) -> dict:
        """Add a GPU node (``gpus=0`` for a CPU node without accelerator label)."""
        labels = {POOL_LABEL: pool, "kubernetes.io/hostname": name}
        if gpus:
            labels[ACCEL_LABEL] = accelerator
        if spot:
            labels[SPOT_LABEL] = "true"
        res = {"cpu": "8", "memory": "32Gi", "pods": "110"}
        if gpus:
            res[GPU] = str(gpus)
        node = {
            "metadata": {"name": name, "labels": labels},
            "spec": {},
            "status": {
                "capacity": dict(res),
                "allocatable": dict(res),
                "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
            },
        }
        return self.create("nodes", node)

    def inject_fault(self, *, kind: str, model: str | None = None, image: str | None = None):
        """Make pods whose ``--model``/``--served-model-name`` or image matches misbehave.

        kind: image_pull | crash | oom | slow.
        """
        assert kind in FAULTS, kind
        assert model or image
        with self.lock:
            if model:
                self.faults.append(("model", model, kind))
            if image:
                self.faults.append(("image", image, kind))

    def set_autoscaler(
        self, mode: str, *, message: str = "", node: dict | None = None, delay_s: float = 0.0
    ) -> None:
        """How the cluster autoscaler answers a pod no node can take (once per pod).

        mode ``off`` (the default): it says nothing, as when the pool has no autoscaling;
        ``no_scale_up``: a ``NotTriggerScaleUp`` event (``message``, default: the pool is at
        its maximum); ``scale_up``: a ``TriggeredScaleUp`` event, then ``add_node(**node)``
        after ``delay_s`` seconds (the scheduler places the pod there).
        """
        assert mode in ("off", "no_scale_up", "scale_up"), mode
        assert mode != "scale_up" or node is not None
        with self.lock:
            self.autoscaler = (mode, message, node, delay_s)

    def set_metric(self, namespace: str, hpa: str, value: float) -> None:
        """The per-pod value of HPA ``namespace/hpa``'s Pods metric (what the custom-metrics
        adapter would serve for ``vllm:num_requests_waiting``), or the value of ScaledObject
        ``namespace/hpa``'s prometheus query (the pool's total); the HPA controller and KEDA's
        act on it at once (``tests/fakes/k8s_fleet.py``)."""
        with self.lock:
            self.metrics[(namespace, hpa)] = float(value)
            k8s_fleet.reconcile(self)
            self.changed.notify_all()

    def forbid(self, verb: str, resource: str) -> None:
        """Answer 403 for ``verb`` (get/list/watch/create/update/patch/delete) on ``resource``."""
        with self.lock:
            self.forbidden.add((verb, resource))

    def proxy_to(self, namespace: str, service: str, url: str) -> None:
        """Create Service ``namespace/service`` (and its namespace) if missing; the API's
        service proxy to it forwards GETs to ``url`` (what its endpoints would answer)."""
        with self.lock:
            if ("", namespace) not in self.objects["namespaces"]:
                self._create("namespaces", "", {"metadata": {"name": namespace}})
            if (namespace, service) not in self.objects["services"]:
                meta = {"name": service, "namespace": namespace}
                self._create("services", namespace, {"metadata": meta, "spec": {}})
            self.proxy_targets[(namespace, service)] = url.rstrip("/")

    def _proxy_target(self, ns: str, name: str) -> str:
        """The URL behind ``services/[scheme:]NAME[:PORT]/proxy``, as the API server finds it."""
        parts = name.split(":")
        service = parts[1] if len(parts) == 3 else parts[0]
        if (ns, service) not in self.objects["services"]:
            raise ApiError(404, f'services "{service}" not found')
        target = self.proxy_targets.get((ns, service))
        if target is None:
            raise ApiError(
                503, f'no endpoints available for service "{service}"', "ServiceUnavailable"
            )
        return target

    def proxy_pod_to(
        self, namespace: str, url: str, *, pod: str | None = None, labels: dict | None = None
    ) -> None:
        """The API's pod proxy (``pods/NAME[:PORT]/proxy/PATH``) forwards GETs to ``url`` for
        pod ``pod``, or for every pod (present or future: pools' pods have generated names)
        whose labels include ``labels``, as the pod's own server would answer. A later call
        for the same pod or labels replaces the URL."""
        with self.lock:
            if pod is not None:
                self.pod_proxy_targets[(namespace, pod)] = url.rstrip("/")
            if labels is not None:
                rules = [r for r in self.pod_proxy_rules if r[:2] != (namespace, labels)]
                self.pod_proxy_rules = [*rules, (namespace, dict(labels), url.rstrip("/"))]

    def _pod_proxy_target(self, ns: str, name: str) -> str:
        """The URL behind ``pods/[scheme:]NAME[:PORT]/proxy``; 503 as the API server answers
        when the pod has no server behind it (not running, nothing listening)."""
        parts = name.split(":")
        pod_name = parts[1] if len(parts) == 3 else parts[0]
        pod = self.objects["pods"].get((ns, pod_name))
        if pod is None:
            raise ApiError(404, f'pods "{pod_name}" not found')
        target = self.pod_proxy_targets.get((ns, pod_name))
        labels = pod["metadata"].get("labels") or {}
        for rns, want, url in self.pod_proxy_rules:
            if target is None and rns == ns and want.items() <= labels.items():
                target = url
        if target is None or pod["status"].get("phase") != "Running":
            raise ApiError(
                503, f"error trying to reach service: dial tcp {pod['status'].get('podIP')}: "
                "connect: connection refused", "ServiceUnavailable",
            )  # fmt: skip
        return target

    @staticmethod
    def _forward(url: str) -> str:
        try:
            with urlopen(url, timeout=30) as resp:  # noqa: S310 - a loopback test server
                return resp.read().decode("utf-8", errors="replace")
        except (URLError, OSError) as exc:
            raise ApiError(503, f"error trying to reach service: {type(exc).__name__}") from None

    def reset_counts(self) -> None:
        with self.lock:
            self.request_counts.clear()
            self.requests.clear()

    def create(self, resource: str, obj: dict, namespace: str | None = None) -> dict:
        """Create an object directly (no HTTP, not counted)."""
        with self.lock:
            ns = namespace or obj.get("metadata", {}).get("namespace")
            return copy.deepcopy(self._create(resource, ns, obj))

    def get(self, resource: str, name: str, namespace: str | None = None) -> dict | None:
        """A copy of a stored object, or None."""
        ns = namespace if RESOURCES[resource][2] else ""
        if RESOURCES[resource][2] and ns is None:
            ns = self.namespace
        with self.lock:
            obj = self.objects[resource].get((ns, name))
            return copy.deepcopy(obj) if obj else None

    def list(self, resource: str, namespace: str | None = None, selector: str = "") -> list[dict]:
        """Copies of stored objects (optionally one namespace / label selector)."""
        with self.lock:
            return [
                copy.deepcopy(o)
                for (ns, _), o in self.objects[resource].items()
                if (namespace is None or ns == namespace)
                and label_matches(selector, o["metadata"].get("labels"))
            ]

    def add_pod(
        self, name: str, *, node: str, namespace: str = "default", gpus: int = 0, ready=True
    ) -> dict:
        """A static running pod (not owned by any controller), e.g. for benchmarks."""
        c = {"name": "main", "image": "busybox", "resources": {"limits": {GPU: str(gpus)}}}
        pod = {
            "metadata": {"name": name, "namespace": namespace, "labels": {"app": name}},
            "spec": {"nodeName": node, "containers": [c]},
            "status": {
                "phase": "Running",
                "podIP": f"10.9.{random.randint(0, 254)}.{random.randint(1, 254)}",
                "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
                "containerStatuses": [
                    {
                        "name": "main",
                        "ready": ready,
                        "restartCount": 0,
                        "image": "busybox",
                        "imageID": "sha256:0",
                        "state": {"running": {"startedAt": _now_iso()}},
                    }
                ],
            },
        }
        return self.create("pods", pod, namespace)

    def wait_for(self, predicate, timeout: float = 10.0) -> bool:
        """Wait until ``predicate(self)`` is true (checked after every change)."""
        deadline = time.monotonic() + timeout
        with self.changed:
            while not predicate(self):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.changed.wait(min(left, 0.1))
        return True

    def model_probe(self, url: str) -> list[str]:
        """What ``/v1/models`` would list on the ready pod whose IP is in ``url``."""
        host = urlparse(url if "//" in url else "http://" + url).hostname
        with self.lock:
            for pod in self.objects["pods"].values():
                if pod["status"].get("podIP") == host and _is_ready(pod):
                    args = pod_args(pod["spec"])
                    name = arg_value(args, "--served-model-name") or arg_value(args, "--model")
                    return [name] if name else []
        return []

    def served_models(self, namespace: str | None = None) -> list[str]:
        """Served model names of all ready vLLM pods (for assertions)."""
        out = []
        with self.lock:
            for (ns, _), pod in self.objects["pods"].items():
                if (namespace is None or ns == namespace) and _is_ready(pod):
                    name = arg_value(pod_args(pod["spec"]), "--served-model-name")
                    if name:
                        out.append(name)
        return sorted(out)

    # ------------------------------------------------------------ storage

    def _bump(self, resource: str, typ: str, obj: dict) -> None:
        self.rv += 1
        obj["metadata"]["resourceVersion"] = str(self.rv)
        self.history.append((self.rv, typ, resource, copy.deepcopy(obj)))
        if len(self.history) > 20000:
            del self.history[:5000]
        self.changed.notify_all()

    def _key(self, resource: str, ns: str | None, name: str) -> tuple[str, str]:
        return ((ns or self.namespace) if RESOURCES[resource][2] else "", name)

    def _create(self, resource: str, ns: str | None, obj: dict) -> dict:
        group, version, namespaced, kind = RESOURCES[resource]
        obj = copy.deepcopy(obj)
        meta = obj.setdefault("metadata", {})
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = meta["generateName"] + _rand()
        if not meta.get("name"):
            raise ApiError(422, f"{kind} name is required")
        if namespaced:
            meta["namespace"] = ns or meta.get("namespace") or self.namespace
        key = self._key(resource, meta.get("namespace"), meta["name"])
        if key in self.objects[resource]:
            raise ApiError(409, f'{resource} "{meta["name"]}" already exists', "AlreadyExists")
        self._validate(resource, obj)
        obj["apiVersion"] = f"{group}/{version}" if group else version
        obj["kind"] = kind
        meta["uid"] = f"uid-{_rand(12)}"
        meta["creationTimestamp"] = _now_iso()
        meta.pop("resourceVersion", None)
        if resource in ("deployments", "replicasets"):
            meta["generation"] = 1
            obj.setdefault("status", {})
        if resource == "deployments":
            spec = obj.setdefault("spec", {})
            spec.setdefault("replicas", 1)
            spec.setdefault("progressDeadlineSeconds", 600)
            spec.setdefault("strategy", {"type": "RollingUpdate"})
        if resource == "pods":
            obj.setdefault("status", {}).setdefault("phase", "Pending")
        self.objects[resource][key] = obj
        self._bump(resource, "ADDED", obj)
        return obj

    def _validate(self, resource: str, obj: dict) -> None:
        if resource != "deployments":
            return
        spec = obj.get("spec") or {}
        sel = (spec.get("selector") or {}).get("matchLabels") or {}
        labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
        if not sel or any(labels.get(k) != v for k, v in sel.items()):
            raise ApiError(422, "spec.template.metadata.labels: does not match selector")
        for c in (spec.get("template") or {}).get("spec", {}).get("containers") or []:
            if not c.get("name") or not c.get("image"):
                raise ApiError(422, "spec.template.spec.containers: name and image required")

    def _update(self, resource: str, key: tuple[str, str], new: dict, *, status_only=False):
        cur = self.objects[resource].get(key)
        if cur is None:
            raise ApiError(404, f'{resource} "{key[1]}" not found')
        want_rv = (new.get("metadata") or {}).get("resourceVersion")
        if want_rv and want_rv != cur["metadata"]["resourceVersion"]:
            raise ApiError(
                409,
                f'Operation cannot be fulfilled on {resource} "{key[1]}": the object has been '
                "modified; please apply your changes to the latest version and try again",
            )
        new = copy.deepcopy(new)
        meta = new.setdefault("metadata", {})
        for k in ("uid", "creationTimestamp", "name", "namespace", "generation"):
            if k in cur["metadata"]:
                meta[k] = cur["metadata"][k]
        new["apiVersion"], new["kind"] = cur["apiVersion"], cur["kind"]
        if status_only:
            new = {**cur, "status": new.get("status", cur.get("status"))}
        elif "status" in cur and resource != "pods":
            new["status"] = cur["status"]  # the main resource ignores status changes
        if resource == "deployments":
            if new.get("spec", {}).get("selector") != cur["spec"].get("selector"):
                raise ApiError(422, "spec.selector: field is immutable")
            self._validate(resource, new)
        if resource in ("deployments", "replicasets") and new.get("spec") != cur.get("spec"):
            new["metadata"]["generation"] = cur["metadata"].get("generation", 1) + 1
        self.objects[resource][key] = new
        self._bump(resource, "MODIFIED", new)
        return new

    def _delete(self, resource: str, key: tuple[str, str]) -> dict:
        obj = self.objects[resource].pop(key, None)
        if obj is None:
            raise ApiError(404, f'{resource} "{key[1]}" not found')
        self._bump(resource, "DELETED", obj)
        if resource == "pods":
            self._pstate.pop(key, None)
        if resource == "deployments":  # garbage collection of owned objects
            self._dstate.pop(key, None)
            for rkey, rs in list(self.objects["replicasets"].items()):
                if _owner(rs) == key[1] and rkey[0] == key[0]:
                    self._delete("replicasets", rkey)
        if resource == "replicasets":
            for pkey, pod in list(self.objects["pods"].items()):
                if _owner(pod) == key[1] and pkey[0] == key[0]:
                    self._delete("pods", pkey)
        return obj

    def _event(self, obj: dict, reason: str, message: str, typ: str = "Normal") -> None:
        meta = obj["metadata"]
        ns = meta.get("namespace") or "default"
        ekey = (ns, meta["name"], meta.get("uid"), reason, message)
        ev = self._event_index.get(ekey)
        if ev is not None and (ns, ev["metadata"]["name"]) in self.objects["events"]:
            ev["count"] += 1
            ev["lastTimestamp"] = _now_iso()
            self._bump("events", "MODIFIED", ev)
            return
        ev = {
            "metadata": {"name": f"{meta['name']}.{_rand(10)}"},
            "involvedObject": {
                "kind": obj.get("kind"),
                "name": meta["name"],
                "namespace": ns,
                "uid": meta.get("uid"),
            },
            "reason": reason,
            "message": message,
            "type": typ,
            "count": 1,
            "firstTimestamp": _now_iso(),
            "lastTimestamp": _now_iso(),
            "source": {"component": "fake-controller"},
        }
        self._event_index[ekey] = self._create("events", ns, ev)

    def _log(self, pod: dict, line: str) -> None:
        key = (pod["metadata"]["namespace"], pod["metadata"]["name"])
        stamp = datetime.now(UTC).strftime("%m-%d %H:%M:%S")
        self.pod_logs.setdefault(key, []).append(f"INFO {stamp} {line}")

    # ------------------------------------------------------------ controllers

    def _control_loop(self) -> None:
        last_rv = -1
        while not self._stop.wait(self.tick):
            with self.lock:
                # idle clusters (e.g. 300 static benchmark pods) cost nothing per tick
                busy = (
                    any(not st.get("done") for st in self._pstate.values())
                    or any(_progressing(d) for d in self.objects["deployments"].values())
                    or k8s_fleet.cooling(self)  # a ScaledObject's cooldown runs on the clock
                )
                if busy or self.rv != last_rv:
                    self.reconcile()
                    last_rv = self.rv

    def reconcile(self) -> None:
        """One pass of all controllers (also callable directly from tests)."""
        now = time.monotonic()
        k8s_fleet.reconcile(self)  # gateway routes' status, HPAs (may scale Deployments)
        self._index_owners()
        for key in list(self.objects["deployments"]):
            self._reconcile_deployment(key, now)
        self._index_owners()
        for key in list(self.objects["replicasets"]):
            self._reconcile_replicaset(key)
        self._schedule(now)
        self._kubelet(now)
        self._index_owners()
        for key in list(self.objects["deployments"]):
            self._deployment_status(key, now)

    def _index_owners(self) -> None:
        # one pass over pods/replicasets so controllers stay O(objects), not O(objects^2)
        idx: dict[tuple[str, str, str], list] = {}
        for res in ("replicasets", "pods"):
            for k, o in self.objects[res].items():
                owner = _owner(o)
                if owner:
                    idx.setdefault((res, k[0], owner), []).append((k, o))
        self._owners = idx

    def _owned(self, resource: str, ns: str, owner: str) -> list[tuple[tuple[str, str], dict]]:
        return [
            (k, o)
            for k, o in self._owners.get((resource, ns, owner), [])
            if k in self.objects[resource]
        ]

    def _reconcile_deployment(self, key, now) -> None:
        dep = self.objects["deployments"][key]
        ns, name = key
        spec = dep["spec"]
        h = _template_hash(spec["template"])
        rs_name = f"{name}-{h}"
        rss = self._owned("replicasets", ns, name)
        rev_key = "deployment.kubernetes.io/revision"
        revisions = [int(rs["metadata"]["annotations"].get(rev_key, 0)) for _, rs in rss]
        st = self._dstate.setdefault(key, {"started": now, "gen": 0})
        if st["gen"] != dep["metadata"]["generation"]:
            # a new rollout (template or replica change) restarts the progress deadline
            st.update(started=now, gen=dep["metadata"]["generation"])
        new_key = (ns, rs_name)
        if new_key not in self.objects["replicasets"]:
            tmpl = copy.deepcopy(spec["template"])
            tmpl.setdefault("metadata", {}).setdefault("labels", {})["pod-template-hash"] = h
            sel = copy.deepcopy(spec["selector"])
            sel.setdefault("matchLabels", {})["pod-template-hash"] = h
            owner = [_owner_ref("Deployment", dep)]
            rs = {
                "metadata": {
                    "name": rs_name,
                    "labels": dict(tmpl["metadata"]["labels"]),
                    "annotations": {rev_key: str(max(revisions, default=0) + 1)},
                    "ownerReferences": owner,
                },
                "spec": {"replicas": 0, "selector": sel, "template": tmpl},
            }
            self._create("replicasets", ns, rs)
            self._index_owners()
            self._event(dep, "ScalingReplicaSet", f"Created new replica set {rs_name}")
            rss = self._owned("replicasets", ns, name)
        else:
            rs = self.objects["replicasets"][new_key]
            if int(rs["metadata"]["annotations"][rev_key]) != max(revisions):
                rs["metadata"]["annotations"][rev_key] = str(max(revisions) + 1)
                self._bump("replicasets", "MODIFIED", rs)
        old = [(k, rs) for k, rs in rss if k != new_key]
        desired = spec["replicas"]
        recreate = spec.get("strategy", {}).get("type") == "Recreate"
        ready_new = self._ready_count(ns, rs_name)
        for k, rs in old:
            if rs["spec"]["replicas"] != 0 and (recreate or desired == 0 or ready_new >= desired):
                self._scale_rs(k, 0)
                self._event(dep, "ScalingReplicaSet", f"Scaled down replica set {k[1]} to 0")
        old_pods = sum(len(self._owned("pods", ns, k[1])) for k, _ in old)
        # Recreate: the new ReplicaSet waits until every old pod is gone
        target = 0 if (recreate and old_pods) else desired
        if self.objects["replicasets"][new_key]["spec"]["replicas"] != target:
            self._scale_rs(new_key, target)
            if target:
                msg = f"Scaled up replica set {rs_name} to {target}"
                self._event(dep, "ScalingReplicaSet", msg)

    def _scale_rs(self, key, n: int) -> None:
        rs = self.objects["replicasets"][key]
        rs["spec"]["replicas"] = n
        rs["metadata"]["generation"] += 1
        self._bump("replicasets", "MODIFIED", rs)

    def _ready_count(self, ns: str, rs_name: str) -> int:
        return sum(1 for _, p in self._owned("pods", ns, rs_name) if _is_ready(p))

    def _reconcile_replicaset(self, key) -> None:
        rs = self.objects["replicasets"][key]
        ns, name = key
        pods = self._owned("pods", ns, name)
        want = rs["spec"]["replicas"]
        if len(pods) > want:
            pods.sort(key=lambda kp: _is_ready(kp[1]))
            for pkey, pod in pods[: len(pods) - want]:
                self._event(pod, "Killing", f"Stopping container {_cname(pod)}")
                self._delete("pods", pkey)
        for _ in range(want - len(pods)):
            tmpl = copy.deepcopy(rs["spec"]["template"])
            owner = [_owner_ref("ReplicaSet", rs)]
            pod = {
                "metadata": {
                    "name": f"{name}-{_rand()}",
                    "labels": tmpl.get("metadata", {}).get("labels", {}),
                    "annotations": tmpl.get("metadata", {}).get("annotations", {}),
                    "ownerReferences": owner,
                },
                "spec": tmpl.get("spec", {}),
                "status": {"phase": "Pending"},
            }
            pod = self._create("pods", ns, pod)
            self._pstate[(ns, pod["metadata"]["name"])] = {"fault": self._fault_for(pod["spec"])}
            self._event(rs, "SuccessfulCreate", f"Created pod: {pod['metadata']['name']}")
        if want != len(pods):
            self._index_owners()
        status = {
            "replicas": len(self._owned("pods", ns, name)),
            "readyReplicas": self._ready_count(ns, name),
        }
        if rs.get("status") != status:
            rs["status"] = status
            self._bump("replicasets", "MODIFIED", rs)

    def _fault_for(self, pod_spec: dict) -> str | None:
        args = pod_args(pod_spec)
        names = {arg_value(args, "--model"), arg_value(args, "--served-model-name")}
        images = {c.get("image") for c in pod_spec.get("containers") or []}
        for field, value, kind in self.faults:
            if (field == "model" and value in names) or (field == "image" and value in images):
                return kind
        return None

    def _schedule(self, now) -> None:
        pending = [
            (k, p)
            for k, p in self.objects["pods"].items()
            if not p["spec"].get("nodeName") and k in self._pstate
        ]
        for due, node in [c for c in self._coming_nodes if c[0] <= now]:
            self._coming_nodes.remove((due, node))
            self.add_node(**node)
        if not pending:
            return
        used: Counter = Counter()
        for p in self.objects["pods"].values():
            node = p["spec"].get("nodeName")
            if node and p["status"].get("phase") not in ("Succeeded", "Failed"):
                used[node] += pod_gpus(p["spec"])
        nodes = list(self.objects["nodes"].values())
        for key, pod in pending:
            need = pod_gpus(pod["spec"])
            sel = pod["spec"].get("nodeSelector") or {}
            mismatch = insufficient = 0
            chosen = None
            for node in nodes:
                labels = node["metadata"].get("labels", {})
                if any(labels.get(k) != v for k, v in sel.items()):
                    mismatch += 1
                    continue
                alloc = int(node["status"]["allocatable"].get(GPU, 0))
                if alloc - used[node["metadata"]["name"]] < need:
                    insufficient += 1
                    continue
                chosen = node
                break
            if chosen is None:
                parts = []
                if insufficient:
                    parts.append(f"{insufficient} Insufficient {GPU}")
                if mismatch:
                    parts.append(f"{mismatch} node(s) didn't match Pod's node affinity/selector")
                msg = f"0/{len(nodes)} nodes are available: {', '.join(parts) or 'no nodes'}."
                old = (pod["status"].get("conditions") or [{}])[0]
                cond = {
                    "type": "PodScheduled",
                    "status": "False",
                    "reason": "Unschedulable",
                    "message": msg,
                    # kept while the pod stays unschedulable, as the API server does
                    "lastTransitionTime": old.get("lastTransitionTime") or _now_iso(),
                }
                if old != cond:
                    pod["status"]["conditions"] = [cond]
                    self._bump("pods", "MODIFIED", pod)
                    self._event(pod, "FailedScheduling", msg, "Warning")
                self._autoscale(key, pod, now)
                continue
            nname = chosen["metadata"]["name"]
            used[nname] += need
            pod["spec"]["nodeName"] = nname
            pod["status"].update(
                hostIP=f"10.0.0.{sum(map(ord, nname)) % 250 + 1}",
                podIP=f"10.4.{random.randint(0, 254)}.{random.randint(1, 254)}",
                conditions=[{"type": "PodScheduled", "status": "True"}],
                startTime=_now_iso(),
            )
            self._pstate[key]["scheduled"] = now
            self._bump("pods", "MODIFIED", pod)
            self._event(pod, "Scheduled", f"Successfully assigned {key[0]}/{key[1]} to {nname}")

    def _autoscale(self, key, pod: dict, now: float) -> None:
        """The cluster autoscaler's one answer to an unschedulable pod (``set_autoscaler``)."""
        mode, message, node, delay_s = self.autoscaler
        st = self._pstate[key]
        if mode == "off" or st.get("autoscaler"):
            return
        st["autoscaler"] = mode
        if mode == "no_scale_up":
            text = message or "pod didn't trigger scale-up: 1 max node group size reached"
            self._event(pod, "NotTriggerScaleUp", text)
            return
        group = f"gke-fake-{(node or {}).get('pool', 'gpu-pool')}-grp"
        self._event(pod, "TriggeredScaleUp", f"pod triggered scale-up: [{{{group} 0->1}}]")
        self._coming_nodes.append((now + delay_s, dict(node or {})))

    def _kubelet(self, now) -> None:
        for key, pod in list(self.objects["pods"].items()):
            st = self._pstate.get(key)
            if st and "scheduled" in st and not st.get("done"):
                self._kubelet_pod(key, pod, st, now)

    @staticmethod
    def _set_cstatus(pod: dict, **fields) -> None:
        c = pod["spec"]["containers"][0]
        cs = (pod["status"].get("containerStatuses") or [{}])[0]
        base = {
            "name": c["name"],
            "image": c.get("image"),
            "imageID": f"sha256:{hashlib.sha256(str(c.get('image')).encode()).hexdigest()}",
            "ready": False,
            "restartCount": 0,
        }
        pod["status"]["containerStatuses"] = [{**base, **cs, **fields}]

    def _kubelet_pod(self, key, pod, st, now) -> None:
        fault = st["fault"]
        age = now - st["scheduled"]
        image = pod["spec"]["containers"][0].get("image")
        stage = st.get("stage")
        if fault == "image_pull":
            if stage is None and age >= self.ready_delay / 3:
                st["stage"] = "pull-error"
                msg = f'rpc error: failed to pull and unpack image "{image}": not found'
                waiting = {"waiting": {"reason": "ErrImagePull", "message": msg}}
                self._set_cstatus(pod, state=waiting)
                self._bump("pods", "MODIFIED", pod)
                self._event(pod, "Failed", f'Failed to pull image "{image}": {msg}', "Warning")
            elif stage == "pull-error" and age >= self.ready_delay * 2 / 3:
                st["stage"] = "backoff"
                msg = f'Back-off pulling image "{image}"'
                waiting = {"waiting": {"reason": "ImagePullBackOff", "message": msg}}
                self._set_cstatus(pod, state=waiting)
                self._bump("pods", "MODIFIED", pod)
                self._event(pod, "BackOff", msg, "Warning")
            return
        model = arg_value(pod_args(pod["spec"]), "--model")
        if stage is None:
            st["stage"], st["started"] = "running", now
            self._event(pod, "Pulled", f'Container image "{image}" already present on machine')
            self._event(pod, "Started", f"Started container {_cname(pod)}")
            self._set_cstatus(pod, state={"running": {"startedAt": _now_iso()}}, started=True)
            pod["status"]["phase"] = "Running"
            self._set_ready(pod, False)
            self._bump("pods", "MODIFIED", pod)
            self._log(pod, "vLLM API server version 0.0.0-fake")
            self._log(pod, f"args: {pod_args(pod['spec'])}")
            self._log(pod, f"Loading model weights for {model} ...")
            return
        since = now - st["started"]
        if fault in ("crash", "oom"):
            if stage == "running" and since >= self.crash_every:
                st["stage"], st["started"] = "backoff", now
                restarts = pod["status"]["containerStatuses"][0].get("restartCount", 0) + 1
                if fault == "oom":
                    reason, code = "OOMKilled", 137
                    self._log(pod, "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate")
                else:
                    reason, code = "Error", 1
                    self._log(pod, "RuntimeError: Engine core initialization failed.")
                msg = f"back-off 10s restarting failed container={_cname(pod)} pod={key[1]}"
                term = {"reason": reason, "exitCode": code, "finishedAt": _now_iso()}
                self._set_cstatus(
                    pod,
                    restartCount=restarts,
                    state={"waiting": {"reason": "CrashLoopBackOff", "message": msg}},
                    lastState={"terminated": term},
                    started=False,
                )
                self._bump("pods", "MODIFIED", pod)
                text = f"Back-off restarting failed container {_cname(pod)} in pod {key[1]}"
                self._event(pod, "BackOff", text, "Warning")
            elif stage == "backoff" and since >= self.crash_every / 2:
                st["stage"], st["started"] = "running", now
                self._set_cstatus(pod, state={"running": {"startedAt": _now_iso()}}, started=True)
                self._bump("pods", "MODIFIED", pod)
                self._log(pod, f"Loading model weights for {model} ...")
            return
        delay = self.ready_delay * (self.slow_factor if fault == "slow" else 1)
        if since >= delay:
            st["done"] = True
            self._set_cstatus(pod, ready=True)
            self._set_ready(pod, True)
            self._bump("pods", "MODIFIED", pod)
            self._log(pod, "Application startup complete.")

    @staticmethod
    def _set_ready(pod: dict, ready: bool) -> None:
        s = "True" if ready else "False"
        conds = [c for c in pod["status"].get("conditions", []) if c["type"] == "PodScheduled"]
        conds += [{"type": "ContainersReady", "status": s}, {"type": "Ready", "status": s}]
        pod["status"]["conditions"] = conds

    def _deployment_status(self, key, now) -> None:
        dep = self.objects["deployments"].get(key)
        if dep is None:
            return
        ns, name = key
        spec = dep["spec"]
        new_rs = f"{name}-{_template_hash(spec['template'])}"
        all_pods = [
            p
            for _, rs in self._owned("replicasets", ns, name)
            for _, p in self._owned("pods", ns, rs["metadata"]["name"])
        ]
        new_pods = [p for _, p in self._owned("pods", ns, new_rs)]
        ready = sum(1 for p in all_pods if _is_ready(p))
        new_ready = sum(1 for p in new_pods if _is_ready(p))
        desired = spec["replicas"]
        complete = new_ready >= desired and len(all_pods) == len(new_pods)
        deadline = spec.get("progressDeadlineSeconds", 600) * self.time_scale
        prev = {c["type"]: c for c in (dep.get("status") or {}).get("conditions", [])}
        if complete:
            msg = f'ReplicaSet "{new_rs}" has successfully progressed.'
            prog = ("True", "NewReplicaSetAvailable", msg)
        elif now - self._dstate[key]["started"] > deadline:
            msg = f'ReplicaSet "{new_rs}" has timed out progressing.'
            prog = ("False", "ProgressDeadlineExceeded", msg)
        else:
            prog = ("True", "ReplicaSetUpdated", f'ReplicaSet "{new_rs}" is progressing.')
        if ready >= desired:
            avail = ("True", "MinimumReplicasAvailable", "Deployment has minimum availability.")
        else:
            msg = "Deployment does not have minimum availability."
            avail = ("False", "MinimumReplicasUnavailable", msg)
        conds = []
        for typ, (s, reason, msg) in (("Available", avail), ("Progressing", prog)):
            old = prev.get(typ)
            same = old and old["status"] == s and old["reason"] == reason
            stamp = old["lastTransitionTime"] if same else _now_iso()
            conds.append(
                {
                    "type": typ,
                    "status": s,
                    "reason": reason,
                    "message": msg,
                    "lastTransitionTime": stamp,
                    "lastUpdateTime": stamp,
                }
            )
        status = {
            "observedGeneration": dep["metadata"]["generation"],
            "replicas": len(all_pods),
            "updatedReplicas": len(new_pods),
            "readyReplicas": ready,
            "availableReplicas": ready,
            "unavailableReplicas": max(0, desired - ready),
            "conditions": conds,
        }
        if dep.get("status") != status:
            was = prev.get("Progressing", {}).get("reason")
            if prog[1] == "ProgressDeadlineExceeded" and was != prog[1]:
                self._event(dep, "ProgressDeadlineExceeded", prog[2], "Warning")
            dep["status"] = status
            self._bump("deployments", "MODIFIED", dep)

    # ------------------------------------------------------------ HTTP dispatch

    def handle(self, method: str, path: str, query: dict, body: bytes, ctype: str):
        """Route one request; returns ``(code, payload)`` (payload may be a watch marker)."""
        parts = [unquote(p) for p in path.split("/") if p]
        if parts[:1] == ["api"] and len(parts) >= 3:
            group, rest = "", parts[2:]
        elif parts[:1] == ["apis"] and len(parts) >= 4:
            group, rest = parts[1], parts[3:]
        else:
            raise ApiError(404, f"the server could not find the requested resource {path}")
        ns = None
        if len(rest) >= 3 and rest[0] == "namespaces":
            ns, rest = rest[1], rest[2:]
        resource = rest[0]
        name = rest[1] if len(rest) > 1 else None
        sub = rest[2] if len(rest) > 2 else None
        if resource not in RESOURCES or RESOURCES[resource][0] != group:
            raise ApiError(404, f"the server could not find the requested resource ({resource})")
        watch = query.get("watch", [""])[0] in ("true", "1")
        verb = {
            "GET": "watch" if watch else ("get" if name else "list"),
            "POST": "create",
            "PUT": "update",
            "PATCH": "patch",
            "DELETE": "delete",
        }.get(method, method.lower())
        rname = f"{resource}/{sub}" if sub else resource
        request = ApiRequest(verb, group, rname, ns, None if verb == "create" else name)
        with self.lock:
            self.request_counts[(verb, rname)] += 1
            self.requests.append(request)
            denied = self.authorize is not None and not self.authorize(request)
            if denied or (verb, rname) in self.forbidden or (verb, resource) in self.forbidden:
                who = "system:serviceaccount:llm-console:console"
                where = f' in the namespace "{ns}"' if ns else ""
                raise ApiError(
                    403,
                    f'{resource} is forbidden: User "{who}" cannot {verb} resource "{rname}" '
                    f'in API group "{group}"{where}',
                )
            if verb == "watch":
                return 200, ("WATCH", resource, ns, query)
            if sub == "log":
                return 200, self._read_log(ns, name, query)
            if sub == "scale" and resource == "deployments":
                return 200, k8s_fleet.handle_scale(self, verb, ns, name, body, ctype)
            if sub == "proxy" and resource == "services" and verb == "get":
                target = self._proxy_target(ns, name)
            elif sub == "proxy" and resource == "pods" and verb == "get":
                target = self._pod_proxy_target(ns, name)
            else:
                status_only = sub == "status"
                return 200, self._crud(verb, resource, ns, name, query, body, ctype, status_only)
        return 200, self._forward(target + "/" + "/".join(rest[3:]))  # outside the lock

    def _read_log(self, ns, name, query) -> str:
        key = (ns, name)
        if key not in self.objects["pods"]:
            raise ApiError(404, f'pods "{name}" not found')
        lines = self.pod_logs.get(key, [])
        tail = query.get("tailLines", [None])[0]
        if tail:
            lines = lines[-int(tail) :]
        return "".join(line + "\n" for line in lines)

    def _crud(self, verb, resource, ns, name, query, body, ctype, status_only):
        store = self.objects[resource]
        namespaced = RESOURCES[resource][2]
        if verb == "list":
            items = [o for k, o in store.items() if not (namespaced and ns) or k[0] == ns]
            lsel = query.get("labelSelector", [""])[0]
            fsel = query.get("fieldSelector", [""])[0]
            items = [
                o
                for o in items
                if label_matches(lsel, o["metadata"].get("labels")) and field_matches(fsel, o)
            ]
            return {
                "kind": RESOURCES[resource][3] + "List",
                "apiVersion": self._api_version(resource),
                "metadata": {"resourceVersion": str(self.rv)},
                "items": items,
            }
        if verb == "create":
            return self._create(resource, ns, json.loads(body or b"{}"))
        key = self._key(resource, ns, name)
        if verb == "get":
            if key not in store:
                raise ApiError(404, f'{resource} "{name}" not found')
            return store[key]
        if verb == "delete":
            return self._delete(resource, key)
        if verb == "update":
            return self._update(resource, key, json.loads(body or b"{}"), status_only=status_only)
        if verb == "patch":
            cur = store.get(key)
            if cur is None:
                raise ApiError(404, f'{resource} "{name}" not found')
            patch = json.loads(body or b"null")
            ct = ctype.split(";")[0].strip()
            if ct == "application/json-patch+json":
                if not isinstance(patch, list):
                    raise ApiError(400, "json patch must be a list of operations")
                new = json_patch(cur, patch)
            elif ct == "application/merge-patch+json":
                new = merge_patch(cur, patch)
            elif ct == "application/strategic-merge-patch+json":
                new = strategic_merge_patch(cur, patch)
            else:
                raise ApiError(415, f"unsupported patch content type {ct}")
            return self._update(resource, key, new, status_only=status_only)
        raise ApiError(405, f"verb {verb} not supported")

    @staticmethod
    def _api_version(resource: str) -> str:
        group, version = RESOURCES[resource][:2]
        return f"{group}/{version}" if group else version

    def watch_events(self, resource, ns, query):
        """Yield watch events (JSON lines) after the requested resourceVersion until timeout."""
        since = int(query.get("resourceVersion", ["0"])[0] or 0)
        timeout = float(query.get("timeoutSeconds", ["30"])[0])
        lsel = query.get("labelSelector", [""])[0]
        fsel = query.get("fieldSelector", [""])[0]
        deadline = time.monotonic() + timeout
        with self.lock:
            if since and self.history and since < self.history[0][0] - 1:
                gone = ApiError(410, "too old resource version").status()
                yield json.dumps({"type": "ERROR", "object": gone})
                return
            since = since or self.rv
        while not self._stop.is_set():
            out = []
            with self.changed:
                for rv, typ, res, obj in self.history:
                    if rv <= since or res != resource:
                        continue
                    if ns and obj["metadata"].get("namespace") != ns:
                        continue
                    if label_matches(lsel, obj["metadata"].get("labels")) and field_matches(
                        fsel, obj
                    ):
                        out.append(json.dumps({"type": typ, "object": obj}))
                since = max(since, self.rv)
            yield from out  # write outside the lock
            left = deadline - time.monotonic()
            if left <= 0:
                return
            with self.changed:
                if self.rv <= since:
                    self.changed.wait(min(left, 0.2))


def _owner(obj: dict) -> str | None:
    refs = obj["metadata"].get("ownerReferences") or []
    return refs[0]["name"] if refs else None


def _cname(pod: dict) -> str:
    return (pod["spec"].get("containers") or [{"name": "?"}])[0]["name"]


def _is_ready(pod: dict) -> bool:
    return any(
        c["type"] == "Ready" and c["status"] == "True" for c in pod["status"].get("conditions", [])
    )


def _make_handler(cluster: FakeCluster):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:  # quiet
            pass

        def _send(self, code: int, payload) -> None:
            if isinstance(payload, str):
                self._send_bytes(code, payload.encode(), "text/plain")
            else:
                self._send_bytes(code, json.dumps(payload).encode(), "application/json")

        def _send_bytes(self, code: int, data: bytes, ctype: str) -> None:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            # the client may have given up (its timeout, e.g. on a slow proxied service)
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                self.wfile.write(data)

        def _dispatch(self, method: str) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            if self.headers.get("Authorization") != f"Bearer {cluster.token}":
                self._send(401, ApiError(401, "Unauthorized").status())
                return
            url = urlparse(self.path)
            try:
                code, payload = cluster.handle(
                    method,
                    url.path,
                    parse_qs(url.query),
                    body,
                    self.headers.get("Content-Type", ""),
                )
            except ApiError as exc:
                self._send(exc.code, exc.status())
                return
            if isinstance(payload, tuple) and payload[:1] == ("WATCH",):
                self._stream(cluster.watch_events(*payload[1:]))
                return
            if isinstance(payload, str):
                self._send(code, payload)
                return
            with cluster.lock:  # objects are live: serialise under the lock
                data = json.dumps(payload)
            self._send_bytes(code, data.encode(), "application/json")

        def _stream(self, events) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            try:
                for ev in events:
                    line = ((ev if isinstance(ev, str) else json.dumps(ev)) + "\n").encode()
                    self.wfile.write(f"{len(line):x}\r\n".encode() + line + b"\r\n")
                    self.wfile.flush()
                self.wfile.write(b"0\r\n\r\n")
            except (BrokenPipeError, ConnectionResetError):
                pass
            self.close_connection = True

        def do_GET(self) -> None:
            self._dispatch("GET")

        def do_POST(self) -> None:
            self._dispatch("POST")

        def do_PUT(self) -> None:
            self._dispatch("PUT")

        def do_PATCH(self) -> None:
            self._dispatch("PATCH")

        def do_DELETE(self) -> None:
            self._dispatch("DELETE")

    return Handler


def _owner_ref(kind: str, owner: dict) -> dict:
    return {
        "apiVersion": "apps/v1",
        "kind": kind,
        "name": owner["metadata"]["name"],
        "uid": owner["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def _progressing(dep: dict) -> bool:
    conds = (dep.get("status") or {}).get("conditions") or []
    return not any(
        c["type"] == "Progressing"
        and c["reason"] in ("NewReplicaSetAvailable", "ProgressDeadlineExceeded")
        for c in conds
    )
