"""What a chat user sees when the model they pick sleeps at 0 replicas (issue 14), in headless
Chromium: the app runs as a real ``streamlit run`` with FLEET_DISCOVERY, its kubeconfig on the
fake API server (in this process, seeded as we ship it plus a pool made by
``fleet.create_pool``); a fake OpenAI server stands in for the gateway, serving a model while
a ready pod of the fake serves it. The admin side is ``fleet_scaling.scale_pool`` itself.
No sleeps: every step waits for what the page shows."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.e2e.test_chat_browser import open_chat, send
from tests.support.browser import pick_option
from tests.support.fleet import two_pool_gateway
from tests.support.servers import ROOT
from webapp.cluster import fleet_scaling

pytestmark = pytest.mark.e2e
NS = "vllm"
MISTRAL = "mistral-7b"
SCREENS = ROOT / "bench" / "results" / "screens"


@pytest.fixture
def fleet_app(streamlit_app):
    """(app, fake cluster, fake gateway, admin clients): pools "vllm" and "mistral"."""
    tokens = ["Good ", "morning, ", "I ", "was ", "asleep."]
    with two_pool_gateway(tokens, NS) as (fake, srv, admin):
        app = streamlit_app(LLM_URL=srv.url, FLEET_DISCOVERY="true",
                            KUBECONFIG=fake.kubeconfig_path, K8S_NAMESPACE=NS)  # fmt: skip
        yield app, fake, srv, admin


def pick_model(page, model: str) -> None:
    box = page.get_by_test_id("stSidebar").get_by_test_id("stSelectbox")
    pick_option(page, box, model)
    expect(box.get_by_role("combobox", name="Model")).to_have_value(model)


def test_a_user_wakes_a_sleeping_model_and_gets_the_answer(fleet_app, page):
    app, fake, srv, admin = fleet_app
    fleet_scaling.scale_pool(admin, NS, "mistral", 0)  # the admin puts it to sleep
    assert fake.wait_for(lambda f: MISTRAL not in f.served_models(NS), 10)
    fake.ready_delay = 6.0  # the woken replica loads its weights for a while
    open_chat(page, app.url)
    pick_model(page, MISTRAL)
    sidebar = page.get_by_test_id("stSidebar")
    expect(sidebar).to_contain_text("asleep")
    send(page, "Are you awake?")
    waking = page.get_by_test_id("stAlert").filter(has_text=f"{MISTRAL} was asleep")
    expect(waking).to_contain_text("is being woken")
    expect(waking).to_contain_text("Your message will be sent when the model is ready")
    expect(page.get_by_test_id("stChatMessage").first).to_contain_text("Are you awake?")
    expect(sidebar).not_to_contain_text("asleep")  # drawn anew once woken
    assert fake.get("deployments", "mistral", NS)["spec"]["replicas"] == 1
    SCREENS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENS / "wake.png"), full_page=True)
    answer = page.get_by_test_id("stChatMessage").nth(1)
    expect(answer).to_contain_text("Good morning, I was asleep.", timeout=60_000)
    expect(waking).to_have_count(0)
    for stray in ("True", "False"):  # nothing drawn by Streamlit's magic from the page's code
        expect(page.get_by_text(stray, exact=True)).to_have_count(0)
    assert [r["body"]["model"] for r in srv.requests if r["path"].endswith("completions")] == [
        MISTRAL
    ]
    page.screenshot(path=str(SCREENS / "wake-answered.png"), full_page=True)
