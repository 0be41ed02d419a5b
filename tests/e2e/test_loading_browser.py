"""What an admin and a chat user see while a switch loads the new model (issue 13.2, 13.3),
in headless Chromium: the app runs as a real ``streamlit run`` (chat + admin); the fake
cluster holds the new pod before Ready while the test writes the recorded GPU start-up
log into it; the fake vLLM endpoint answers 503 on /health meanwhile (in place, nothing
serves the chat). No sleeps: every step waits for what the page shows."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest
from playwright.sync_api import expect

from tests.admin.ui.test_switch_loading import loading_pod, recorded_lines
from tests.e2e import test_admin_browser as admin_browser
from tests.e2e.test_admin_browser import (
    ADMIN,
    AUDIENCE,
    SHOTS,
    TIMEOUT_MS,
    alert,
    choose_model,
    open_admin,
)
from tests.support.admin_world import admin_world
from tests.support.cluster import NS

pytestmark = pytest.mark.e2e
iap_key = admin_browser.iap_key  # the admin browser tests' fixture
NEW = "mistral-7b"
_WHEN = re.compile(r"\b\d\d-\d\d \d\d:\d\d:\d\d\b")


@pytest.fixture
def app_world(streamlit_app, iap_key):
    """The app (chat + admin) in the fake world; yields (app, world)."""
    with admin_world() as world:
        app = streamlit_app(
            APP_MODE="all", ADMIN_EMAILS=ADMIN, IAP_AUDIENCE=AUDIENCE, IAP_CERTS_FILE=iap_key[1],
            ADMIN_STATUS_REFRESH_S="3600", **world.env(),
        )  # fmt: skip
        yield app, world


def write_log(world, pod: str, lines: list[str]) -> None:
    """Append ``lines`` to the pod's log, their times rewritten to now."""
    now = datetime.now(UTC).strftime("%m-%d %H:%M:%S")
    with world.fc.lock:
        world.fc.pod_logs.setdefault((NS, pod), []).extend(_WHEN.sub(now, x) for x in lines)


def test_both_pages_show_the_load_and_a_kept_message_is_sent_when_ready(app_world, page, iap_key):
    app, world = app_world
    world.fc.inject_fault(kind="slow", model=NEW)
    world.fc.slow_factor, world.fc.time_scale = 1e6, 1.0  # held before Ready; real deadline
    open_admin(page, app, iap_key[0])
    choose_model(page, NEW)
    page.get_by_role("button", name=f"Deploy {NEW}").click()
    assert world.fc.wait_for(lambda _: loading_pod(world, NEW) is not None, 30)
    pod = loading_pod(world, NEW)
    world.llm.configure(health_status=503)  # the old pod is gone: nothing serves the chat
    lines = recorded_lines()
    weights = next(n for n, x in enumerate(lines) if "Loading weights took" in x)
    write_log(world, pod, lines[: weights + 1])

    # the admin sees the phase, with the table of phases
    section = page.get_by_test_id("stAlert").filter(has_text=re.compile(r"Loading weights \(\d"))
    expect(section).to_be_visible(timeout=TIMEOUT_MS)
    expect(page.get_by_text(f"Loading {NEW} on nvidia-l4")).to_be_visible()
    page.get_by_text(f"Loading {NEW} on nvidia-l4").scroll_into_view_if_needed()
    page.screenshot(path=str(SHOTS / "admin-model-loading.png"))

    # the chat user sees it in plain words, and a message sent now waits
    chat = page.context.new_page()
    chat.goto(app.url)
    said = chat.get_by_text(re.compile(rf"Switching to {NEW}: loading the weights"))
    expect(said).to_be_visible(timeout=TIMEOUT_MS)
    box = chat.get_by_test_id("stChatInputTextArea")
    box.fill("hello while it loads")
    box.press("Enter")
    expect(chat.get_by_text("Your message will be sent when the model is ready.")).to_be_visible(
        timeout=TIMEOUT_MS
    )
    expect(chat.get_by_test_id("stChatMessage")).to_have_count(1)
    # said once, next to the kept message: counted now, not after the top's 2 s poll
    switching = chat.get_by_test_id("stAlert").filter(has_text=f"Switching to {NEW}")
    assert switching.count() == 1
    chat.screenshot(path=str(SHOTS / "chat-model-loading.png"))

    # the rest of the log, the pod becomes Ready, the server answers: the message goes
    write_log(world, pod, lines[weights + 1 :])
    world.fc.slow_factor = 1.0
    world.llm.configure(health_status=200)
    expect(alert(page, f"Now serving {NEW}")).to_be_visible(timeout=TIMEOUT_MS)
    expect(page.get_by_text(re.compile(r"Ready after "))).to_be_visible()
    expect(chat.get_by_test_id("stChatMessage")).to_have_count(2, timeout=TIMEOUT_MS)
    expect(chat.get_by_text("Your message will be sent when the model is ready.")).to_have_count(0)
    sent = [r for r in world.llm.requests if r["path"].endswith("completions")]
    assert sent and sent[-1]["body"]["messages"][-1]["content"] == "hello while it loads"
