"""What an admin sees of usage in Chromium: the per-user and per-model tables for two users
and two models (a user's name that is a formula and markdown shown as plain text), the week,
and the CSV the browser downloads."""

import csv
import io
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.support.servers import ROOT, StreamlitServer
from tests.support.usage_answers import EVIL, LLAMA, QWEN, seed_two_users_two_models

pytestmark = pytest.mark.e2e
PAGE = Path(__file__).with_name("usage_page.py")
SHOTS = ROOT / "test-results" / "screenshots"


def _cells(table) -> list[str]:
    """The cells of an st.dataframe, from the grid's accessible table (its canvas has none)."""
    return table.locator("td").all_inner_texts()


def test_usage_tables_and_csv_for_two_users_and_two_models(page, tmp_path):
    seed_two_users_two_models(f"sqlite:///{tmp_path / 'chat.db'}")  # the app's DATABASE_URL
    env = {"GPU_HOURLY_PRICE_USD": "2", "USAGE_GPUS": "1"}
    app = StreamlitServer(env, tmp_path, script=PAGE).start()
    try:
        page.goto(app.url)
        expect(page.get_by_text("Usage page drawn.")).to_be_visible(timeout=60_000)
        expect(page.get_by_text("estimated cost $48.00", exact=False)).to_be_visible()
        expect(page.get_by_test_id("stDataFrame")).to_have_count(2)
        users, models = page.get_by_test_id("stDataFrame").all()
        expect(users.locator("td").first).to_have_text("alice@example.com")
        cells = _cells(users)
        assert cells[cells.index("alice@example.com") + 2 :][:5] == ["3", "190", "310", "0.533", "24"]  # fmt: skip
        assert EVIL in cells and "Guest" in cells
        assert _cells(models) == [LLAMA, "3", "350", "450", "0.3", "38.4",
                                  QWEN, "2", "100", "100", "1.5", "9.6"]  # fmt: skip
        # the name is data: no link to its URL, no bold "Bob" anywhere on the page
        assert page.locator("a[href*='evil.example']").count() == 0
        assert page.locator("strong", has_text="Bob").count() == 0

        page.get_by_text("Last week").click()
        expect(page.get_by_text("6 answers", exact=False)).to_be_visible()
        with page.expect_download() as download:
            page.get_by_role("button", name="Download CSV").click()
        assert download.value.suggested_filename.endswith(".csv")
        rows = list(csv.DictReader(io.StringIO(Path(download.value.path()).read_text())))
        assert [(r["user"], r["model"], r["requests"], r["tokens_in"]) for r in rows] == [
            ("'" + EVIL, LLAMA, "1", "200"),
            ("'" + EVIL, QWEN, "1", "500"),
            ("alice@example.com", LLAMA, "2", "150"),
            ("alice@example.com", QWEN, "1", "40"),
            ("Guest", QWEN, "1", "60"),
        ]
        assert sum(float(r["est_cost_usd"]) for r in rows) == pytest.approx(336.0)
        expect(page.get_by_text("6 answers", exact=False)).to_be_visible()
        assert page.get_by_test_id("stException").count() == 0
        SHOTS.mkdir(parents=True, exist_ok=True)  # for the README, while the app still runs
        page.screenshot(path=str(SHOTS / "usage-section.png"), full_page=True)
    finally:
        app.stop()
