"""What a person sees: the chat page in headless Chromium against the scripted fake."""

import re
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import expect

from tests.delivery.helpers import base_response_headers
from tests.fakes.openai_server import FakeOpenAI, Script
from tests.fakes.tracker import Tracker
from tests.support.servers import ROOT, StreamlitServer, free_port
from webapp.store import title_from_prompt
from webapp.store.records import short_title

pytestmark = pytest.mark.e2e
SHOTS = ROOT / "test-results" / "screenshots"


@pytest.fixture
def fake():
    with FakeOpenAI(model="fake-chat", max_model_len=2048) as srv:
        yield srv


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    """(fake, app): one scripted model server and one app for the tests here that need no
    settings of their own (each test has its own browser context, so its own session)."""
    with FakeOpenAI(model="fake-chat", max_model_len=2048) as srv:
        app = StreamlitServer({"LLM_URL": srv.url}, tmp_path_factory.mktemp("shared")).start()
        try:
            yield srv, app
        finally:
            app.stop()


@pytest.fixture
def tracker():
    with Tracker() as t:
        yield t


def requests_elsewhere(page, app) -> list[str]:
    """A live list of the page's HTTP requests to any origin but the app's."""
    origin = urlsplit(app.url).netloc
    seen: list[str] = []

    def note(request):
        url = urlsplit(request.url)
        if url.scheme in ("http", "https") and url.netloc != origin:
            seen.append(request.url)

    page.on("request", note)
    return seen


def open_chat(page, url):
    page.goto(url)
    page.get_by_test_id("stChatInputTextArea").wait_for()


def send(page, text):
    box = page.get_by_test_id("stChatInputTextArea")
    box.fill(text)
    box.press("Enter")


def assistant(page):
    return page.locator('[data-testid="stChatMessage"]').nth(1)


def start_a_long_answer(fake, app, page):
    """A new chat whose answer (30 tokens at 10 a second) has begun to stream; the sidebar."""
    fake.set_script(Script(n_tokens=30, ttft_s=0.05, tokens_per_s=10))
    open_chat(page, app.url)
    send(page, "tell me a long story")
    expect(assistant(page)).to_contain_text("quick brown", timeout=10_000)
    return page.get_by_test_id("stSidebar")


def test_streamed_answer_renders_markdown_and_stats(shared, page):
    fake, app = shared
    tokens = ["Here ", "is ", "**bold** ", "code:\n\n", "```python\n", "print('hi')\n", "```\n"]
    fake.set_script(Script(tokens=tokens, ttft_s=0.1, tokens_per_s=20))
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


def test_stop_on_a_slow_stream_says_stopped_at_once(shared, page):
    """Between two tokens of a slow model (here 2 a second) the page is redrawn at once by
    the Stop click while the answer ends on its own thread at its next token: the new page
    waits for that end, so it says Stopped, not "still being written elsewhere"."""
    fake, app = shared
    fake.set_script(Script(n_tokens=60, ttft_s=0.05, tokens_per_s=2))
    open_chat(page, app.url)
    send(page, "tell me a slow story")
    expect(assistant(page)).to_contain_text("quick brown", timeout=10_000)
    page.get_by_role("button", name="Stop").click()
    expect(page.get_by_text("Stopped — the answer is incomplete.")).to_be_visible()
    expect(page.get_by_text("Still being written")).to_have_count(0)
    expect(assistant(page)).to_contain_text("quick brown")
    # and while the model has not started answering yet (its first token 6 s away)
    fake.set_script(Script(n_tokens=5, ttft_s=6))
    send(page, "and another")
    expect(page.get_by_role("button", name="Stop")).to_be_visible()
    page.wait_for_timeout(500)
    page.get_by_role("button", name="Stop").click()
    expect(page.get_by_text("Stopped — the answer is incomplete.")).to_have_count(2)
    expect(page.get_by_text("Still being written")).to_have_count(0)


def test_a_busy_model_says_how_many_requests_are_ahead_until_the_answer_starts(
    fake, streamlit_app, page
):
    """Issue 13.3: while vLLM holds the request in its queue (4 waiting, this one among
    them), the answer's bubble says so instead of a silent spinner; the answer replaces
    it when its first token comes. Stop works while waiting."""
    fake.set_script(Script(tokens=["Your ", "turn ", "came."], hold=True))
    fake.configure(metrics_override={"vllm:num_requests_waiting": 4})
    app = streamlit_app(LLM_URL=fake.url, CHAT_BUSY_AFTER_S=0.5, CHAT_BUSY_POLL_S=0.5)
    open_chat(page, app.url)
    send(page, "are you there?")
    busy = assistant(page).get_by_text("The model is busy: 3 requests ahead of yours.")
    expect(busy).to_be_visible()
    expect(page.get_by_role("button", name="Stop")).to_be_visible()
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "chat_model_busy.png"), full_page=True)
    fake.configure(metrics_override={"vllm:num_requests_waiting": 0})
    expect(assistant(page).get_by_text("Waiting for the model…")).to_be_visible()
    fake.release()
    expect(assistant(page)).to_contain_text("Your turn came.")
    expect(assistant(page)).to_contain_text(re.compile(r"3 tokens · first token"))
    expect(assistant(page).get_by_text("Waiting for the model")).to_have_count(0)
    # Stop works while waiting; the request is closed once it leaves the queue
    fake.reset()  # held again
    fake.set_script(Script(n_tokens=200, tokens_per_s=20, hold=True))
    send(page, "and now?")
    second = page.get_by_test_id("stChatMessage").nth(3)
    expect(second.get_by_text("Waiting for the model…")).to_be_visible()
    page.get_by_role("button", name="Stop").click()
    expect(second.get_by_text("Stopped")).to_be_visible()
    fake.release()
    for _ in range(100):
        if fake.disconnects:
            break
        page.wait_for_timeout(100)
    assert fake.disconnects == 1


def test_unreachable_backend_message(streamlit_app, page):
    app = streamlit_app(LLM_URL=f"http://127.0.0.1:{free_port()}")
    open_chat(page, app.url)
    expect(page.get_by_test_id("stSidebar")).to_contain_text("unreachable")
    send(page, "hello?")
    expect(assistant(page)).to_contain_text("cannot be reached")
    expect(page.get_by_role("button", name="Retry")).to_be_visible()
    expect(page.get_by_test_id("stChatMessage").first).to_contain_text("hello?")


def test_html_in_messages_is_text_not_code(shared, page):
    fake, app = shared
    fake.set_script(Script(tokens=['<img src=x onerror="window.__pwned=1">', " <b>x</b>"]))
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
    # the title is drawn before the answer (the request goes first): rename once it is done
    expect(assistant(page)).to_contain_text("1 token · first token")
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


def test_a_title_typed_while_the_answer_streams_neither_stops_it_nor_is_lost(shared, page):
    """Renaming mid-answer: the answer streams on to its end (a rename is no Stop), then the
    new title shows in the heading and the sidebar, and both are saved (a reload keeps them)."""
    fake, app = shared
    disconnects = fake.disconnects
    sidebar = start_a_long_answer(fake, app, page)
    sidebar.get_by_text("This conversation").click()
    title = sidebar.get_by_label("Title")
    title.fill("Renamed while streaming")
    title.press("Enter")
    heading = page.locator("h3")
    for seen in ("as streamed", "reloaded, from the store"):
        if seen.startswith("reloaded"):
            page.reload()
        expect(heading).to_have_text("Renamed while streaming")
        expect(sidebar.get_by_role("button", name="Renamed while streaming")).to_be_visible()
        expect(assistant(page)).to_contain_text("30 tokens · first token")
        expect(page.get_by_text(re.compile("Stopped|Interrupted"))).to_have_count(0)
    assert fake.disconnects == disconnects  # the stream was read to its end


def test_a_setting_changed_while_the_answer_streams_applies_to_the_next_one(shared, page):
    """Changing a setting mid-answer does not stop the answer; the next message uses it."""
    fake, app = shared
    sidebar = start_a_long_answer(fake, app, page)
    sidebar.get_by_text("Settings").click()
    box = sidebar.get_by_label("Max answer tokens")
    box.fill("77")
    box.press("Enter")
    expect(assistant(page)).to_contain_text("30 tokens · first token")
    expect(page.get_by_text(re.compile("Stopped|Interrupted"))).to_have_count(0)
    fake.set_script(Script(tokens=["short"]))
    send(page, "and another")
    expect(page.get_by_test_id("stChatMessage").nth(3)).to_contain_text("short")
    chats = [r["body"] for r in fake.requests if r["path"].endswith("/chat/completions")]
    asked = [b.get("max_completion_tokens", b.get("max_tokens")) for b in chats[-2:]]
    assert asked[0] != 77 and asked[1] == 77


def test_a_model_picked_while_the_answer_streams_answers_the_next_message(streamlit_app, page):
    """Picking another model mid-answer does not stop the answer; the next message goes to
    the model picked, which the sidebar then names."""
    with FakeOpenAI(model=["m-one", "m-two"], max_model_len=2048) as fake:
        sidebar = start_a_long_answer(fake, streamlit_app(LLM_URL=fake.url), page)
        sidebar.get_by_test_id("stSelectbox").click()
        page.get_by_role("option", name="m-two").click()
        expect(assistant(page)).to_contain_text("30 tokens · first token")
        expect(page.get_by_text(re.compile("Stopped|Interrupted"))).to_have_count(0)
        fake.set_script(Script(tokens=["short"]))
        send(page, "and another")
        expect(page.get_by_test_id("stChatMessage").nth(3)).to_contain_text("1 token · first token")
        expect(page.get_by_test_id("stChatMessage").nth(3)).to_contain_text("· m-two")
        expect(sidebar.get_by_text("Model: m-two")).to_be_visible()
        chats = [r["body"] for r in fake.requests if r["path"].endswith("/chat/completions")]
        assert [b["model"] for b in chats] == ["m-one", "m-two"]


def test_images_in_untrusted_text_load_nothing(shared, tracker, page):
    """Issue 10.3: markdown images in an answer, in a prompt and so in the conversation's
    title make no request anywhere; each shows as a link, the <img> tag as text."""
    fake, app = shared
    img = f"{tracker.url}/img?d=secret"
    answer = [
        f"See ![chart]({img}) and ![logo][r], ",
        f'<img src="{img}&tag=1"> and `![code]({img})`.\n\n',
        f"[r]: {img}&ref=1\n",
    ]
    fake.set_script(Script(tokens=answer, tokens_per_s=20))
    elsewhere = requests_elsewhere(page, app)
    open_chat(page, app.url)
    prompt = f"Title ![t]({img}&title=1) please"
    send(page, prompt)
    title = short_title(title_from_prompt(prompt))
    for _ in ("as streamed", "reloaded, from the store"):
        bot = assistant(page)
        # drawn to the end, and the page redrawn for the new conversation (title, sidebar)
        expect(bot).to_contain_text(re.compile(r"tokens · first token"))
        expect(page.get_by_text("This conversation")).to_be_visible()
        assert page.locator("img[src*='127.0.0.2']").count() == 0
        assert tracker.hits == []
        expect(bot.get_by_role("link", name="image: chart")).to_have_attribute("href", img)
        expect(bot.get_by_role("link", name="image: logo")).to_have_attribute(
            "href", f"{img}&ref=1"
        )
        expect(bot).to_contain_text(f'<img src="{img}&tag=1">')
        expect(bot.locator("code")).to_have_text(f"![code]({img})")
        user = page.get_by_test_id("stChatMessage").first
        expect(user.get_by_role("link", name="image: t")).to_be_visible()
        # the conversation's title, on the page and in the sidebar, as it was typed
        expect(page.locator("h3")).to_have_text(title)
        sidebar = page.get_by_test_id("stSidebar")
        expect(sidebar.get_by_role("button", name=title, exact=True)).to_be_visible()
        page.reload()
    assert tracker.hits == []
    assert elsewhere == []


def test_the_app_works_behind_its_security_headers_which_stop_images_and_framing(
    shared, tracker, browser
):
    """The headers the load balancer adds (k8s/base/backendconfig.yaml) on every response:
    the page streams an answer with code, maths and icons without one CSP violation; an
    image from elsewhere is refused; a page elsewhere cannot frame the app."""
    fake, app = shared
    headers = base_response_headers("webapp-chat")
    # a response fulfilled by the test counts as from the internet for Chromium's local
    # network checks, which would then refuse the app's own websocket on 127.0.0.1
    ctx = browser.new_context(permissions=["local-network-access"])
    ctx.add_init_script(
        "window.__csp = []; document.addEventListener('securitypolicyviolation',"
        " e => window.__csp.push([e.effectiveDirective, e.blockedURI]))"
    )

    def as_deployed(route):
        response = route.fetch()
        route.fulfill(response=response, headers={**response.headers, **headers})

    ctx.route(f"{app.url}/**", as_deployed)
    page = ctx.new_page()
    try:
        fake.set_script(
            Script(tokens=["**Hi** $x^2$ :material/home:\n\n", "```python\nprint(1)\n```"])
        )
        open_chat(page, app.url)
        send(page, "hello")
        expect(assistant(page).locator("code").last).to_contain_text("print(1)")
        expect(assistant(page)).to_contain_text(re.compile(r"2 tokens · first token"))
        assert page.evaluate("window.__csp") == []
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SHOTS / "chat_behind_security_headers.png"), full_page=True)

        page.evaluate("url => { const i = new Image(); i.src = url }", f"{tracker.url}/csp")
        page.wait_for_function("window.__csp.length > 0")
        assert page.evaluate("window.__csp") == [["img-src", f"{tracker.url}/csp"]]

        framer = f"{tracker.url}/framer"  # answered here: it never reaches the tracker
        ctx.route(framer, lambda route: route.fulfill(
            content_type="text/html",
            body=f'<iframe src="{app.url}/" onload="window.__framed = true"></iframe>',
        ))  # fmt: skip
        page.goto(framer)
        page.wait_for_function("window.__framed === true")
        assert page.frames[1].url.startswith("chrome-error://")  # refused, not the app
    finally:
        ctx.close()
    assert tracker.hits == []
