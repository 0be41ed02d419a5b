"""What a person sees: the chat page in headless Chromium against the scripted fake."""

import re

import pytest
from playwright.sync_api import expect

from tests.conftest import free_port
from tests.fakes.openai_server import FakeOpenAI, Script

pytestmark = pytest.mark.e2e


@pytest.fixture
def fake():
    with FakeOpenAI(model="fake-chat", max_model_len=2048) as srv:
        yield srv


def open_chat(page, url):
    page.goto(url)
    page.get_by_test_id("stChatInputTextArea").wait_for()


def send(page, text):
    box = page.get_by_test_id("stChatInputTextArea")
    box.fill(text)
    box.press("Enter")


def assistant(page):
    return page.locator('[data-testid="stChatMessage"]').nth(1)


def test_streamed_answer_renders_markdown_and_stats(fake, streamlit_app, page):
    tokens = ["Here ", "is ", "**bold** ", "code:\n\n", "```python\n", "print('hi')\n", "```\n"]
    fake.set_script(Script(tokens=tokens, ttft_s=0.1, tokens_per_s=20))
    app = streamlit_app(LLM_URL=fake.url)
    open_chat(page, app.url)
    send(page, "show me code")
    expect(page.get_by_test_id("stChatMessage").first).to_contain_text("show me code")
    # the answer appears while it is still streaming (cursor shown), then completes
    expect(assistant(page)).to_contain_text("Here", timeout=10_000)
    expect(assistant(page).locator("strong")).to_have_text("bold", timeout=10_000)
    expect(assistant(page).locator("code").last).to_contain_text("print('hi')")
    expect(assistant(page)).to_contain_text(re.compile(r"7 tokens · first token"))
    expect(page.get_by_role("button", name="Regenerate")).to_be_visible()


def test_stop_keeps_partial_answer_and_aborts_stream(fake, streamlit_app, page):
    fake.set_script(Script(n_tokens=400, ttft_s=0.05, tokens_per_s=10))
    app = streamlit_app(LLM_URL=fake.url, DEFAULT_MAX_TOKENS=500)
    open_chat(page, app.url)
    send(page, "tell me a long story")
    expect(assistant(page)).to_contain_text("quick brown", timeout=10_000)
    page.get_by_role("button", name="Stop").click()
    expect(page.get_by_text("Stopped")).to_be_visible(timeout=10_000)
    text = assistant(page).inner_text()
    assert "quick brown" in text
    # the HTTP stream was closed, so vLLM would abort the request
    for _ in range(50):
        if fake.disconnects:
            break
        page.wait_for_timeout(100)
    assert fake.disconnects == 1
    # the chat goes on: a new message works after the stop
    fake.set_script(Script(tokens=["after ", "stop"]))
    send(page, "again")
    expect(page.get_by_test_id("stChatMessage").nth(3)).to_contain_text("after stop")


def test_unreachable_backend_message(streamlit_app, page):
    app = streamlit_app(LLM_URL=f"http://127.0.0.1:{free_port()}")
    open_chat(page, app.url)
    expect(page.get_by_test_id("stSidebar")).to_contain_text("unreachable")
    send(page, "hello?")
    expect(assistant(page)).to_contain_text("cannot be reached")
    expect(page.get_by_role("button", name="Retry")).to_be_visible()
    expect(page.get_by_test_id("stChatMessage").first).to_contain_text("hello?")


def test_html_in_messages_is_text_not_code(fake, streamlit_app, page):
    fake.set_script(Script(tokens=['<img src=x onerror="window.__pwned=1">', " <b>x</b>"]))
    app = streamlit_app(LLM_URL=fake.url)
    open_chat(page, app.url)
    send(page, "<script>window.__pwned=1</script> hi")
    expect(page.get_by_test_id("stChatMessage").first).to_contain_text("<script>")
    expect(assistant(page)).to_contain_text("<img src=x")
    assert page.evaluate("window.__pwned") is None
    assert assistant(page).locator("img").count() == 0


def test_conversation_title_is_a_plain_heading_not_formatted_markdown(fake, streamlit_app, page):
    """The first prompt names the conversation in its words (no bold, no code, no H1); a
    title typed with markup shows exactly as typed, in the heading and the sidebar."""
    fake.set_script(Script(tokens=["ok"]))
    app = streamlit_app(LLM_URL=fake.url)
    open_chat(page, app.url)
    send(page, "Why is **this** `query` so slow?")
    heading = page.locator("h3")
    expect(heading).to_have_text("Why is this query so slow?")
    expect(page.locator("h1")).to_have_count(0)
    sidebar = page.get_by_test_id("stSidebar")
    expect(sidebar.get_by_role("button", name="Why is this query so slow?")).to_be_visible()
    typed = "**mine** `as typed` _x_ [link](http://x) :material/home: $x$"
    sidebar.get_by_text("This conversation").click()
    title = sidebar.get_by_label("Title")
    title.fill(typed)
    title.press("Enter")
    expect(heading).to_have_text(typed)
    expect(sidebar.get_by_role("button", name=typed)).to_be_visible()
    formatting = "strong, em, code, a, [role=img], .katex"
    assert heading.locator(formatting).count() == 0
    assert sidebar.get_by_role("button", name=typed).locator(formatting).count() == 0
