"""Notifications in a real browser: after a secret scanner reports a live token as leaked, its
owner sees the unread count in the navigation and the notice on the Notifications page, and marks
it read (htmx swaps the item and the count in place)."""

from __future__ import annotations

import json
import urllib.request

import pytest
from playwright.sync_api import expect

from tests.browser.helpers import sign_in_exact_heading

pytestmark = pytest.mark.browser


def report_leak(server, secret: str, url: str) -> int:
    request = urllib.request.Request(server.url + "/api/v1/leaks", method="POST",
                                     data=json.dumps({"tokens": [secret], "url": url}).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.status


def test_a_leak_report_shows_up_as_a_notification(page, make, server, screenshot):
    org = make.org("business", name="Acme")
    owner = make.member(org, "owner", email="olivia@acme.test")
    leaked = make.token(owner, name="Deploy bot", type="organization")
    make.token(owner, name="Laptop")

    sign_in_exact_heading(page, owner)
    navigation = page.get_by_role("navigation", name="Main")
    expect(navigation.get_by_role("link", name="Notifications", exact=True)).to_be_visible()

    assert report_leak(server, leaked.secret, "https://paste.example/raw/42") == 202
    page.reload()
    link = navigation.get_by_role("link", name="Notifications 1 unread")
    expect(link).to_be_visible()
    link.click()

    expect(page.get_by_role("heading", name="Notifications", exact=True)).to_be_visible()
    items = page.get_by_role("list", name="Notifications").get_by_role("listitem")
    expect(items).to_have_count(1)
    notice = items.first
    expect(notice).to_contain_text("Token “Deploy bot” was reported as exposed and has been revoked: "
                                   "https://paste.example/raw/42")
    expect(notice).to_contain_text("Leaked")
    expect(notice).to_contain_text("New")
    expect(page.get_by_text(leaked.secret)).to_have_count(0)
    screenshot(page, "notifications-leak-unread")

    notice.get_by_role("button", name="Mark as read").click()
    expect(notice.get_by_role("button", name="Mark as read")).to_have_count(0)
    expect(navigation.get_by_role("link", name="Notifications", exact=True)).to_be_visible()
    expect(page.get_by_role("button", name="Mark all as read")).to_have_count(0)
    expect(notice).not_to_contain_text("New")
    screenshot(page, "notifications-leak-read")

    page.reload()  # the change was saved, not only swapped in the page
    expect(navigation.get_by_role("link", name="Notifications", exact=True)).to_be_visible()
    expect(page.get_by_role("list", name="Notifications").get_by_role("listitem")).to_have_count(1)
    expect(page.get_by_role("button", name="Mark as read")).to_have_count(0)
