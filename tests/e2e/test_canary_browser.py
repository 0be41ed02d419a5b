"""What an admin sees of a canary: the admin page in headless Chromium starts a canary of pool
"vllm-mistral" and watches it promote, step by step, while a gateway stand-in sends traffic
by the HTTPRoute weights to two fake vLLM servers playing the pools' pods.

The app runs as a real ``streamlit run`` subprocess (the canary's job runs there, its soak in
real seconds); the fake Kubernetes API, GKE API and vLLM servers run in this process."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.admin.ui.test_canary_section import CANARY, MODEL, NEW, STABLE, ready, seed_pools
from tests.e2e.test_admin_browser import ADMIN, AUDIENCE, alert, iap_key, open_admin  # noqa: F401
from tests.fakes.openai_server import FakeOpenAI, Script
from tests.support.admin_world import admin_world
from tests.support.browser import open_tab, pick_option
from tests.support.cluster import NS
from tests.support.gateway_traffic import GatewayTraffic
from webapp.cluster.pools import pool_labels

pytestmark = pytest.mark.e2e

SCREEN = Path(__file__).resolve().parents[2] / "bench" / "results" / "screens" / "canary.png"


@pytest.fixture
def canary_app(streamlit_app, iap_key):  # noqa: F811
    with (
        admin_world(seed=seed_pools) as world,
        FakeOpenAI(model=MODEL) as stable,
        FakeOpenAI(model=MODEL) as canary,
    ):
        for pool, server in ((STABLE, stable), (CANARY, canary)):
            server.set_script(Script(ttft_s=0.2, n_tokens=4))
            world.fc.proxy_pod_to(NS, server.url, labels=pool_labels(pool))
        assert world.fc.wait_for(lambda f: ready(f, STABLE), 10)
        app = streamlit_app(
            APP_MODE="all", ADMIN_EMAILS=ADMIN, IAP_AUDIENCE=AUDIENCE, IAP_CERTS_FILE=iap_key[1],
            ADMIN_STATUS_REFRESH_S="3600", FLEET="true", **world.env(),
        )  # fmt: skip
        yield app, world.fc, {STABLE: stable.url, CANARY: canary.url}


def number(page, label: str, value: int) -> None:
    box = page.get_by_label(label)
    box.fill(str(value))
    box.press("Tab")


def test_a_canary_promotes_with_its_steps_visible(canary_app, page, iap_key):  # noqa: F811
    app, fc, urls = canary_app
    open_admin(page, app, iap_key[0])
    expect(page.get_by_text(f"Signed in as {ADMIN}")).to_be_visible(timeout=60_000)
    open_tab(page, "Models")
    toggle = page.get_by_text("Switch a pool's model as a canary")
    toggle.scroll_into_view_if_needed()
    toggle.click()
    form = page.locator(".st-key-canary_form")
    pool = form.get_by_role("combobox", name="Pool", exact=True)
    expect(pool).to_have_value(f"{STABLE} — {MODEL}, 1 replica(s)")
    pick_option(page, form.get_by_role("combobox", name="New model"), NEW)
    number(page, "Soak seconds per step", 1)
    number(page, "Canary requests needed to judge a step", 5)
    number(page, "Max TTFT p95 ratio (canary / stable)", 2)
    open_tab(page, "Status")  # typed, not sent yet: kept while another tab is open
    open_tab(page, "Models")
    expect(form.get_by_role("combobox", name="New model")).to_have_value(NEW)
    for label, value in (("Soak seconds per step", "1"),
                         ("Canary requests needed to judge a step", "5")):  # fmt: skip
        expect(form.get_by_label(label)).to_have_value(value)
    with GatewayTraffic(fc, NS, MODEL, urls) as traffic:
        form.get_by_role("button", name="Start canary").click()
        expect(page.get_by_text("Steps: 5% ✓ → 25%")).to_be_visible(timeout=60_000)
        done = alert(page, "Promoted")
        expect(done).to_be_visible(timeout=90_000)
    assert traffic.failures() == 0, traffic.failed
    expect(page.get_by_text("Steps: 5% ✓ → 25% ✓ → 50% ✓ → 100% ✓")).to_be_visible()
    expect(page.get_by_text(f"Traffic now: {STABLE} 0% · {CANARY} 100%")).to_be_visible()
    expect(done).to_contain_text(f"{CANARY} serves the model; pool {STABLE} was removed.")
    page.get_by_text("Canary of pool").first.scroll_into_view_if_needed()
    SCREEN.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREEN), full_page=False)
