"""What an admin sees of the model pools (issue 14): the admin page in headless Chromium with
the inference-gateway layout (FLEET=true) on the fake cluster — deploy a second model as a
pool, see it in the fleet table with its live numbers, then scale it. Reuses the admin page's
browser fixtures (tests/e2e/test_admin_browser.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.e2e.test_admin_browser import ADMIN, AUDIENCE, TIMEOUT_MS, iap_key, open_admin
from tests.support.admin_world import admin_world
from tests.support.browser import open_tab, pick_option
from tests.support.cluster import NS
from tests.support.fleet import seed_fleet
from webapp.admin.audit import AuditLog
from webapp.cluster.pools import pool_labels

pytestmark = pytest.mark.e2e
SCREEN = Path(__file__).resolve().parents[2] / "bench" / "results" / "screens" / "fleet.png"
POOL = "vllm-mistral-7b"
__all__ = ["iap_key"]  # the fixture, imported for this module's tests


@pytest.fixture
def fleet_app(streamlit_app, iap_key):  # noqa: F811 - the imported fixture
    with admin_world(seed=seed_fleet) as world:
        world.fc.add_node("gpu-c")  # a third L4: room for the new pool's second replica
        world.llm.configure(metrics_override={"vllm:num_requests_waiting": 3.0})
        for pool in ("vllm", POOL):  # each pool's replicas answer /metrics through the proxy
            world.fc.proxy_pod_to(NS, world.llm.url, labels=pool_labels(pool))
        app = streamlit_app(
            APP_MODE="all", ADMIN_EMAILS=ADMIN, IAP_AUDIENCE=AUDIENCE,
            IAP_CERTS_FILE=iap_key[1], ADMIN_STATUS_REFRESH_S="3600", FLEET="true", **world.env(),
        )  # fmt: skip
        yield app, world.fc


def test_admin_deploys_a_second_model_as_a_pool_and_scales_it(fleet_app, page, iap_key):  # noqa: F811
    app, fc = fleet_app
    open_admin(page, app, iap_key[0])
    open_tab(page, "Models")
    section = page.get_by_test_id("stHeading").filter(has_text="Model pools")
    expect(section).to_be_visible(timeout=TIMEOUT_MS)
    table = page.get_by_test_id("stTable")
    expect(table).to_contain_text("llama-2-7b")
    box = page.get_by_test_id("stSelectbox").filter(has_text="Model").first
    pick_option(page, box, "mistral-7b —")
    deploy = page.get_by_role("button", name="Deploy mistral-7b as pool")
    expect(page.locator(f'input[aria-label="Pool name"][value="{POOL}"]')).to_be_visible()
    expect(page.get_by_text("Verdict: FITS").first).to_be_visible()
    deploy.click()
    expect(page.get_by_text(f"{POOL}: 1/1 replicas ready.")).to_be_visible(timeout=TIMEOUT_MS)
    row = page.get_by_test_id("stTable").locator("tr").filter(has_text=POOL)
    expect(row).to_contain_text("mistral-7b", timeout=TIMEOUT_MS)
    expect(row).to_contain_text("1/1")
    expect(row).to_contain_text("100%")
    page.get_by_text(f"Change pool {POOL}").click()
    page.get_by_test_id("stNumberInput").filter(has_text="Replicas").filter(
        visible=True).first.locator("input").fill("2")  # fmt: skip
    page.get_by_role("button", name=f"Scale {POOL}").click()
    expect(page.get_by_text(f"{POOL}: 2/2 replicas ready.")).to_be_visible(timeout=TIMEOUT_MS)
    row = page.get_by_test_id("stTable").locator("tr").filter(has_text=POOL)
    expect(row).to_contain_text("2/2", timeout=TIMEOUT_MS)
    page.get_by_test_id("stTable").scroll_into_view_if_needed()
    SCREEN.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREEN), full_page=True)
    entries = AuditLog.from_url(app.env["DATABASE_URL"]).recent()
    assert [(e.action, e.result) for e in reversed(entries)] == [
        ("pool.deploy", "started"), ("pool.deploy", "done"),
        ("pool.scale", "started"), ("pool.scale", "done"),
    ]  # fmt: skip
    assert sorted(fc.served_models(NS)) == ["llama-2-7b", "mistral-7b", "mistral-7b"]
