"""The chat page in Chromium against a REAL vLLM (CPU build, tiny model): gibberish, real protocol."""

import re

import pytest
from playwright.sync_api import expect

pytestmark = [pytest.mark.e2e, pytest.mark.vllm]


@pytest.mark.parametrize("server_fixture", ["vllm_chat", "vllm_base"])
def test_chat_with_real_vllm(server_fixture, request, streamlit_app, page):
    server = request.getfixturevalue(server_fixture)
    app = streamlit_app(LLM_URL=server.url, DEFAULT_MAX_TOKENS=24, DEFAULT_TEMPERATURE=0)
    page.goto(app.url)
    page.get_by_test_id("stChatInputTextArea").wait_for()
    expect(page.get_by_test_id("stSidebar")).to_contain_text("healthy", timeout=15_000)
    expect(page.get_by_test_id("stSidebar")).to_contain_text(server.model)
    box = page.get_by_test_id("stChatInputTextArea")
    box.fill("Hello, who are you?")
    box.press("Enter")
    answer = page.locator('[data-testid="stChatMessage"]').nth(1)
    expect(answer).to_contain_text(
        re.compile(r"\d+ tokens? · first token [\d.]+ s"), timeout=60_000
    )
    expect(page.get_by_role("button", name="Regenerate")).to_be_visible()
