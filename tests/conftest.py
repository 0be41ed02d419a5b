"""Shared fixtures: a Streamlit server subprocess and a headless Chromium page."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest

from tests.support.servers import CHROMIUM, CHROMIUM_ARGS, ROOT, StreamlitServer

pytest_plugins = ["tests.support.vllm_fixtures"]


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
