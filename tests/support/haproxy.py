"""A real sticky reverse proxy in front of app replicas: HAProxy (Debian package ``haproxy``).

``HAProxy({"a": 8501, "b": 8502}, tmp).start()`` writes a config on free ports and runs
``haproxy -f cfg -db`` (foreground, no root, no systemd) until ``stop``. Like a cloud load
balancer with session affinity it:

- pins a browser to one replica with an inserted cookie (``SERVERID=a``);
- passes Streamlit's WebSocket (``/_stcore/stream``) through (HTTP mode upgrades it; the
  tunnel timeout keeps a quiet socket open);
- checks ``/_stcore/health`` twice a second and takes a replica that fails twice out of
  rotation; a pinned browser is then sent to a live one (``option redispatch``) and its
  cookie rewritten, and a replica that answers again comes back.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from tests.support.servers import free_port, stop_process, wait_healthy

COOKIE = "SERVERID"

_CONFIG = """\
global
    maxconn 512

defaults
    mode http
    option forwardfor
    option redispatch
    retries 2
    timeout connect 1s
    timeout client 60s
    timeout server 60s
    timeout tunnel 1h

frontend chat
    bind 127.0.0.1:{port}
    default_backend replicas

backend replicas
    balance roundrobin
    cookie {cookie} insert indirect nocache
    option httpchk GET /_stcore/health
    http-check expect status 200
    default-server inter 500ms fastinter 250ms downinter 250ms fall 2 rise 1
{servers}
"""


def haproxy_binary() -> str | None:
    """The haproxy binary (``/usr/sbin`` is not on every user's PATH), or None."""
    found = shutil.which("haproxy")
    if found:
        return found
    return "/usr/sbin/haproxy" if Path("/usr/sbin/haproxy").exists() else None


def run_haproxy(
    binary: str, config: Path, log: Path, health_url: str, timeout: float
) -> subprocess.Popen:
    """Check ``config``, run ``haproxy -f config -db`` (foreground) logging to ``log``, and
    wait until ``health_url`` (through it) answers 200."""
    check = subprocess.run([binary, "-c", "-q", "-f", str(config)], capture_output=True, text=True)
    if check.returncode != 0:
        raise RuntimeError(f"haproxy rejected its config: {check.stdout}{check.stderr}")
    proc = subprocess.Popen(
        [binary, "-f", str(config), "-db"], stdout=log.open("ab"), stderr=subprocess.STDOUT
    )
    try:
        wait_healthy(proc, health_url, log, "haproxy", timeout)
    except RuntimeError:
        stop_process(proc)
        raise
    return proc


class HAProxy:
    """``haproxy`` in a subprocess, balancing ``replicas`` (name -> port on 127.0.0.1)."""

    def __init__(self, replicas: dict[str, int], tmp: Path, port: int | None = None) -> None:
        binary = haproxy_binary()
        if binary is None:
            raise FileNotFoundError("haproxy is not installed: apt-get install -y haproxy")
        self.binary = binary
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        servers = "\n".join(
            f"    server {name} 127.0.0.1:{port} check cookie {name}"
            for name, port in replicas.items()
        )
        self.config = tmp / "haproxy.cfg"
        self.config.write_text(_CONFIG.format(port=self.port, cookie=COOKIE, servers=servers))
        self.log = tmp / "haproxy.log"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 10) -> HAProxy:
        self.proc = run_haproxy(
            self.binary, self.config, self.log, f"{self.url}/_stcore/health", timeout
        )
        return self

    def restart(self) -> HAProxy:
        """Stop, then start again on the same port (every connection through it drops)."""
        self.stop()
        return self.start()

    def stop(self) -> None:
        stop_process(self.proc)
