"""Browser fixtures: Debian's Chromium driven by Playwright (sync API) against a real gunicorn.

Never `playwright install`: the tests use /usr/bin/chromium. A missing browser fails the tests
(it never skips them), so a green run always means the browser tests ran.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

CHROMIUM = os.environ.get("KEYWARD_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"


@pytest.fixture(scope="session")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail(f"Chromium is missing at {CHROMIUM}: install it with `make browser` (apt), "
                    "never `playwright install`", pytrace=False)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def server(live_server):
    return live_server(workers=2)


@pytest.fixture
def context(browser, server):
    context = browser.new_context(base_url=server.url, viewport={"width": 1440, "height": 900},
                                  locale="en-US", timezone_id="UTC")
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=server.url)
    context.set_default_timeout(10_000)
    yield context
    context.close()


@pytest.fixture
def page(context):
    return context.new_page()


@pytest.fixture
def screenshot():
    """Save a full-page screenshot to test-artifacts/screenshots/<name>.png."""

    def save(page, name: str, **options) -> Path:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{name}.png"
        page.screenshot(path=str(path), **options)
        return path

    return save
