"""A real proxy that routes on the OpenAI body's ``model``, standing in for GKE Inference
Gateway (k8s/components/inference-gateway): HAProxy (Debian package ``haproxy``).

``ModelRouter({"tiny-a": url_a, "tiny-b": url_b}, default="tiny-a", tmp=...).start()`` writes
a config on a free port and runs ``haproxy -f cfg -db`` (foreground, no root) until ``stop``.
Its rules mirror the HTTPRoute ``llm-models``:

- a request whose JSON body names a model goes to that model's server (``option
  http-buffer-request``, then ``req.body,json_query('$.model')`` into a variable, as the
  gateway's body-based router copies it into the header ``X-Gateway-Model-Name``);
- ``GET /v1/models`` and ``GET /health`` carry no body: the default pool answers;
- anything else: 404, as the gateway answers a request no rule matches.

Every request is logged as one line ``route <backend> <method> <path> <status>`` to
``log_path``: ``routes()`` reads them back, so a test can prove which server answered.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from urllib.parse import urlparse

from tests.support.haproxy import haproxy_binary, run_haproxy
from tests.support.servers import free_port, stop_process

_CONFIG = """\
global
    maxconn 256
    log stdout format raw local0

defaults
    mode http
    log global
    timeout connect 2s
    timeout client 300s
    timeout server 300s

frontend gateway
    bind 127.0.0.1:{port}
    option http-buffer-request
    log-format "route %b %HM %HP %ST"
    http-request set-var(txn.model) req.body,json_query('$.model') if METH_POST
{rules}
    use_backend pool_default if METH_GET {{ path /v1/models /health }}
    default_backend no_route

{backends}
backend pool_default
    server default {default}

backend no_route
    http-request return status 404 content-type application/json string "{{\\"error\\":{{\\"message\\":\\"no route\\"}}}}"
"""


def _host_port(url: str) -> str:
    parsed = urlparse(url)
    return f"{parsed.hostname}:{parsed.port}"


class ModelRouter:
    """``haproxy`` in a subprocess routing each model name to its server (base URL)."""

    def __init__(self, servers: dict[str, str], default: str, tmp: Path) -> None:
        binary = haproxy_binary()
        if binary is None:
            raise FileNotFoundError("haproxy is not installed: apt-get install -y haproxy")
        self.binary = binary
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.backend_of = {model: f"pool_{i}" for i, model in enumerate(servers)}
        rules = "\n".join(
            f"    use_backend {backend} if {{ var(txn.model) -m str {model} }}"
            for model, backend in self.backend_of.items()
        )
        backends = "\n".join(
            f"backend {self.backend_of[model]}\n    server s {_host_port(url)}\n"
            for model, url in servers.items()
        )
        self.config = tmp / "router.cfg"
        self.config.write_text(
            _CONFIG.format(
                port=self.port,
                rules=rules,
                backends=backends,
                default=_host_port(servers[default]),
            )
        )
        self.log_path = tmp / "router.log"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 10) -> ModelRouter:
        self.proc = run_haproxy(
            self.binary, self.config, self.log_path, f"{self.url}/health", timeout
        )
        return self

    def routes(self, since: int = 0, count: int = 0) -> list[tuple[str, str, str, int]]:
        """(backend, method, path, status) of each request after the first ``since``, oldest
        first; waits (up to 5 s) until ``count`` are there: HAProxy logs a request once its
        response has been sent, a moment after the client has read it."""
        deadline = time.monotonic() + 5
        while True:
            out = []
            for line in self.log_path.read_text(errors="replace").splitlines():
                parts = line.split()
                if len(parts) == 5 and parts[0] == "route":
                    out.append((parts[1], parts[2], parts[3], int(parts[4])))
            if len(out) - since >= count or time.monotonic() > deadline:
                return out[since:]
            time.sleep(0.05)

    def stop(self) -> None:
        stop_process(self.proc)
