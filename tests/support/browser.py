"""Browser steps shared by the Chromium tests (Playwright, sync API)."""

from __future__ import annotations

import time

from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import Locator, Page, expect

#: Streamlit shows this icon while a script run (or a fragment run) is under way
RUNNING = "stStatusWidgetRunningIcon"


def wait_idle(page: Page, timeout_ms: float = 10_000) -> bool:
    """Until no script run is under way (True), or ``timeout_ms`` passed (False: a page
    whose fragments run all the time). A run that ends while a dropdown is open can draw
    its element anew, which closes the dropdown (seen in CI: the option never came)."""
    try:
        expect(page.get_by_test_id(RUNNING)).to_have_count(0, timeout=timeout_ms)
    except AssertionError:
        return False
    return True


def pick_option(page: Page, opener: Locator, text: str, timeout_ms: float = 30_000) -> None:
    """Open a select box (``opener``) and click its option containing ``text``.

    Waits for the app to be idle first; if the list still closes before the option could be
    clicked (a fragment run, a late rerun), it is opened again until ``timeout_ms``."""
    deadline = time.monotonic() + timeout_ms / 1000
    option = page.get_by_role("option").filter(has_text=text).first
    while True:
        wait_idle(page)
        opener.scroll_into_view_if_needed()  # before opening: a scroll after it closes it
        opener.click()
        try:
            option.click(timeout=3_000)
            return
        except PlaywrightError:
            if time.monotonic() > deadline:
                raise
            page.keyboard.press("Escape")  # a list still open shows nothing to click: close


def open_tab(page: Page, label: str, timeout_ms: float = 30_000) -> None:
    """Click the tab ``label`` of an ``st.tabs`` and wait until it is the selected one."""
    tab = page.get_by_role("tab", name=label, exact=True)
    tab.click(timeout=timeout_ms)
    expect(tab).to_have_attribute("aria-selected", "true", timeout=timeout_ms)
