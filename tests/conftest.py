"""Shared fixtures: a Streamlit server subprocess and a headless Chromium page."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
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

pytest_plugins = ["tests.vllm_fixtures"]


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


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
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"streamlit exited: {self.log.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{self.url}/_stcore/health", timeout=1) as r:
                    if r.status == 200:
                        return self
            except OSError:
                time.sleep(0.2)
        raise RuntimeError(f"streamlit did not start: {self.log.read_text()[-2000:]}")

    def kill(self) -> None:
        """Hard kill (SIGKILL): what a crashed or evicted pod looks like."""
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.fixture
def streamlit_app(tmp_path):
    """Factory: ``streamlit_app(LLM_URL=..., ...)`` starts the app and returns it."""
    servers: list[StreamlitServer] = []

    def start(port: int | None = None, **env: str) -> StreamlitServer:
        srv = StreamlitServer({k: str(v) for k, v in env.items()}, tmp_path, port).start()
        servers.append(srv)
        return srv

    yield start
    for s in servers:
        s.stop()


@pytest.fixture(scope="session")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: install the Debian package 'chromium' (.ci/run does)")
    from playwright.sync_api import expect, sync_playwright

    # Assertions wait up to 15 s (Playwright's default is 5 s): CI runs vLLM, the app and
    # Chromium on 2 cores, and an admin page once took longer than 5 s to draw its status
    # there. Only a failing assertion waits that long.
    expect.set_options(timeout=15_000)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser, request):
    ctx = browser.new_context(viewport={"width": 1280, "height": 900})
    pg = ctx.new_page()
    pg.set_default_timeout(30_000)
    yield pg
    shots = ROOT / "test-results" / "screenshots"
    shots.mkdir(parents=True, exist_ok=True)
    # a failed screenshot must not hide the real result
    with contextlib.suppress(Exception):
        # Streamlit scrolls inside its own container: a tall viewport shows the whole page
        pg.set_viewport_size({"width": 1280, "height": 2400})
        pg.wait_for_timeout(300)
        pg.screenshot(path=str(shots / f"{request.node.name}.png"), full_page=True)
    ctx.close()
