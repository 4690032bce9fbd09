"""Settings → Webhooks in a real browser: an owner adds an endpoint, copies the signing secret shown
once, disables and enables it, opens its delivery log and deletes it through the dialog."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.browser.helpers import sign_in_exact_heading

pytestmark = pytest.mark.browser


def test_owner_adds_an_endpoint_and_copies_its_secret_once(page, make, screenshot):
    org = make.org("business", name="Acme")
    owner = make.member(org, "owner", email="owen@acme.test")
    refused: list[str] = []
    page.on("console", lambda message: refused.append(message.text)
            if "Content Security Policy" in message.text else None)
    sign_in_exact_heading(page, owner)

    page.get_by_role("navigation", name="Main").get_by_role("link", name="Webhooks").click()
    expect(page.get_by_role("heading", name="Webhooks", exact=True)).to_be_visible()
    page.get_by_text("New endpoint", exact=True).click()
    page.get_by_label("Endpoint URL").fill("https://93.184.216.34/keyward")  # a public address: no DNS
    for kind in ("token.updated", "token.deactivated", "token.reactivated"):
        page.get_by_label(kind, exact=True).uncheck()
    page.get_by_role("button", name="Add endpoint").click()

    secret = page.locator("[data-secret-value]")
    expect(secret).to_have_text(re.compile(r"^whsec_[0-9a-f]{64}$"))
    value = secret.inner_text()
    page.get_by_role("button", name="Copy").click()
    expect(page.get_by_text("Copied to clipboard")).to_be_visible()
    assert page.evaluate("navigator.clipboard.readText()") == value
    screenshot(page, "webhooks-secret-shown-once")

    page.goto("/settings/webhooks")
    expect(page.locator("[data-secret-value]")).to_have_count(0)
    expect(page.get_by_text(value)).to_have_count(0)
    row = page.locator("tr", has_text="https://93.184.216.34/keyward")
    expect(row.get_by_text("Active")).to_be_visible()

    row.get_by_role("button", name="Disable").click()
    expect(row.get_by_text("Disabled", exact=True)).to_be_visible()
    row.get_by_role("button", name="Enable").click()
    expect(row.get_by_text("Active")).to_be_visible()

    row.get_by_role("link", name=re.compile("Delivery log")).click()
    expect(page.get_by_role("heading", name="Delivery log")).to_be_visible()
    expect(page.get_by_text("No deliveries yet")).to_be_visible()
    page.go_back()

    row.get_by_role("button", name="Delete").click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_be_visible()
    dialog.get_by_role("button", name="Delete endpoint").click()
    expect(page.get_by_text("No webhook endpoints yet")).to_be_visible()
    assert refused == []
