"""The Content-Security-Policy in a real browser: the pages work under it and nothing is refused."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from shared.core.http_headers import CONTENT_SECURITY_POLICY

pytestmark = pytest.mark.browser


def test_pages_work_under_the_csp_without_a_single_violation(page, make):
    org = make.org("business", name="Acme")
    owner = make.member(org, "owner", email="csp@acme.test")
    make.token(owner, name="Legacy importer")
    make.token(owner, name="CI deploys")
    refused: list[str] = []
    page.on("console", lambda message: refused.append(message.text)
            if "Content Security Policy" in message.text else None)

    response = page.goto("/login")
    assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    page.get_by_label("Email").fill(owner.email)
    page.get_by_label("Password").fill(owner.password)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="API tokens")).to_be_visible()
    # Our scripts ran: app.js marks the document, htmx is loaded.
    assert page.evaluate("document.documentElement.classList.contains('js') && typeof htmx === 'object'")

    page.get_by_label("Filter by name").fill("deploy")  # htmx request and swap
    expect(page.locator("tbody tr")).to_have_count(1)
    expect(page).to_have_url(re.compile(r"name=deploy"))
    page.get_by_label("Filter by name").fill("")
    expect(page.locator("tbody tr")).to_have_count(2)

    page.get_by_role("button", name="Actions for Legacy importer").click()  # a popover: no script needed
    page.locator("tr", has_text="Legacy importer").get_by_role("button", name="Revoke").click()
    expect(page.get_by_role("dialog")).to_be_visible()  # app.js opened the native dialog
    page.get_by_role("dialog").get_by_role("button", name="Cancel").click()

    page.get_by_role("button", name="Generate token").click()
    page.get_by_label("Name", exact=True).fill("Under CSP")
    page.get_by_label("Name", exact=True).press("Enter")
    expect(page.locator("[data-token-value]")).to_be_visible()
    page.get_by_role("button", name="Copy").click()
    expect(page.get_by_text("Copied to clipboard")).to_be_visible()

    assert refused == []
