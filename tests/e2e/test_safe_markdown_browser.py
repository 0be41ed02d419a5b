"""Streamlit's own renderer, not markdown-it, decides what becomes an image: every case of
tests/ui/markdown_cases.py, after safe_markdown, drawn in Chromium loads nothing."""

import json
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import expect

from tests.fakes.tracker import Tracker
from tests.support.servers import StreamlitServer
from tests.ui.markdown_cases import CASES, RENDERER_CASES, U

pytestmark = pytest.mark.e2e
PAGE = Path(__file__).with_name("markdown_page.py")


def test_no_case_makes_streamlit_load_an_image(page, tmp_path):
    with Tracker() as tracker:
        img = f"{tracker.url}/img?d=secret"
        cases = [text.replace(U, img) for text in [t for t, _ in CASES] + RENDERER_CASES]
        (tmp_path / "cases.json").write_text(json.dumps(cases))
        env = {"MARKDOWN_CASES": str(tmp_path / "cases.json")}
        app = StreamlitServer(env, tmp_path, script=PAGE).start()
        try:
            elsewhere = []
            origin = urlsplit(app.url).netloc
            page.on(
                "request",
                lambda r: urlsplit(r.url).netloc in (origin, "") or elsewhere.append(r.url),
            )
            page.goto(app.url)
            expect(page.get_by_text("All cases drawn.")).to_be_visible(timeout=60_000)
            assert page.get_by_test_id("stChatMessage").count() == len(cases)
            assert page.locator("img[src*='127.0.0.2']").count() == 0
            assert tracker.hits == []
            assert elsewhere == []
        finally:
            app.stop()
