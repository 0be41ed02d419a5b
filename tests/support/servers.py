"""Processes tests and benchmarks start: the app under ``streamlit run``, and how Chromium runs.

``ROOT`` is the repository; ``CHROMIUM``/``CHROMIUM_ARGS`` the one browser binary and flags
for tests and bench; ``StreamlitServer`` one app process with its own environment.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_healthy(proc: subprocess.Popen, url: str, log: Path, what: str, timeout: float) -> None:
    """Wait until ``url`` answers 200; raise with the end of ``log`` if ``proc`` exits first
    or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited: {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{what} did not start: {log.read_text()[-2000:]}")


def stop_process(proc: subprocess.Popen | None) -> None:
    """SIGTERM, then SIGKILL after 10 s."""
    if proc and proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


class StreamlitServer:
    """``streamlit run webapp/app.py`` (or ``script``) in a subprocess with its own environment."""

    def __init__(
        self, env: dict[str, str], tmp: Path, port: int | None = None, script: Path | None = None
    ) -> None:
        self.script = script or ROOT / "webapp" / "app.py"
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            "DATABASE_URL": f"sqlite:///{tmp / 'chat.db'}",
            "PYTHONPATH": str(ROOT),
            **env,
        }
        self.log = tmp / f"streamlit-{self.port}.log"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 60) -> StreamlitServer:
        cmd = [
            sys.executable, "-m", "streamlit", "run", str(self.script),
            "--server.port", str(self.port), "--server.address", "127.0.0.1",
            "--server.headless", "true", "--browser.gatherUsageStats", "false",
        ]  # fmt: skip
        self.proc = subprocess.Popen(
            cmd, cwd=ROOT, env=self.env, stdout=self.log.open("ab"), stderr=subprocess.STDOUT
        )
        wait_healthy(self.proc, f"{self.url}/_stcore/health", self.log, "streamlit", timeout)
        return self

    def kill(self) -> None:
        """Hard kill (SIGKILL): what a crashed or evicted pod looks like."""
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def stop(self) -> None:
        stop_process(self.proc)
