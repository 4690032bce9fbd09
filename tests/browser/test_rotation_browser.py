"""Rotation with a grace period in a real browser: the Regenerate dialog's
`Keep the old value working for`, the row's "old value valid until …" and `End grace period`."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from playwright.sync_api import Page, expect

from tests.browser.helpers import api_status, choose, row, sign_in, watch_csp

pytestmark = pytest.mark.browser


@pytest.fixture
def owner(make):
    org = make.org("business", name="Acme")
    return make.member(org, "owner", email="olivia@acme.test")


def regenerate_with(page: Page, name: str, grace_label: str, screenshot=None) -> str:
    choose(page, name, "Regenerate")
    dialog = page.get_by_role("dialog")
    expect(dialog).to_be_visible()
    choice = dialog.get_by_label("Keep the old value working for")
    expect(choice).to_have_value("none")  # "No" unless chosen
    choice.select_option(label=grace_label)
    if screenshot:
        screenshot(page, "rotation-regenerate-dialog")
    dialog.get_by_role("button", name="Regenerate token").click()
    value = page.locator("[data-token-value]")
    expect(value).to_be_visible()
    return value.inner_text().strip()


def test_regenerate_with_24_hours_keeps_the_old_value_and_shows_the_grace_end(page, owner, server, make,
                                                                              screenshot):
    issued = make.token(owner, name="Billing sync")
    refused = watch_csp(page)
    sign_in(page, owner)
    before = datetime.now(UTC)
    new = regenerate_with(page, "Billing sync", "24 hours", screenshot)
    after = datetime.now(UTC)
    assert re.fullmatch(r"kw_[0-9a-f]{64}", new) and new != issued.secret
    expect(page.get_by_text("The old value keeps working until")).to_be_visible()
    expect(row(page, "Billing sync").first).to_contain_text("old value valid until")
    screenshot(page, "rotation-regenerated-24h")

    # Both values authenticate, as the same token, against the live server.
    assert api_status(server, issued.secret) == 200
    assert api_status(server, new) == 200

    page.reload()
    expect(page.locator("[data-token-value]")).to_have_count(0)  # shown once
    assert new not in page.content()
    the_row = row(page, "Billing sync")
    expect(the_row).to_contain_text("old value valid until")
    grace_end = the_row.locator(".grace-note time")
    moment = datetime.fromisoformat(grace_end.get_attribute("datetime"))
    assert before + timedelta(hours=24) - timedelta(seconds=1) <= moment <= after + timedelta(hours=24)
    expect(grace_end).to_have_text(re.compile(r"^in (23|24) hours$"))  # relative, exact on hover
    expect(grace_end).to_have_attribute("title", moment.strftime("%Y-%m-%d %H:%M UTC"))
    the_row.get_by_role("button", name="Actions for Billing sync").click()
    expect(the_row.get_by_role("button", name="End grace period")).to_be_visible()
    screenshot(page, "rotation-grace-row")
    assert refused == []


def test_end_grace_period_confirms_then_stops_the_old_value(page, owner, server, make, screenshot):
    issued = make.token(owner, name="Nightly export")
    refused = watch_csp(page)
    sign_in(page, owner)
    new = regenerate_with(page, "Nightly export", "7 days")
    page.reload()

    choose(page, "Nightly export", "End grace period")
    dialog = page.get_by_role("dialog")
    expect(dialog).to_be_visible()
    screenshot(page, "rotation-end-grace-dialog")
    dialog.get_by_role("button", name="Cancel").click()
    expect(dialog).to_have_count(0)
    assert api_status(server, issued.secret) == 200  # cancelled: nothing changed

    choose(page, "Nightly export", "End grace period")
    page.get_by_role("dialog").get_by_role("button", name="Stop the old value now").click()
    the_row = row(page, "Nightly export")
    expect(the_row).not_to_contain_text("old value valid until")
    the_row.get_by_role("button", name="Actions for Nightly export").click()
    expect(the_row.get_by_role("button", name="End grace period")).to_have_count(0)
    assert api_status(server, issued.secret) == 401
    assert api_status(server, new) == 200
    assert refused == []


def test_a_refused_grace_period_reopens_the_dialog_with_the_error(page, owner, server, make):
    """Only a tampered form can send an unknown value; it changes nothing and says why, beside the field."""
    issued = make.token(owner, name="Tampered")
    sign_in(page, owner)
    choose(page, "Tampered", "Regenerate")
    dialog = page.get_by_role("dialog")
    choice = dialog.get_by_label("Keep the old value working for")
    choice.evaluate("select => { select.options[1].value = 'forever'; select.selectedIndex = 1; }")
    dialog.get_by_role("button", name="Regenerate token").click()
    reopened = page.get_by_role("dialog")
    expect(reopened).to_be_visible()
    expect(reopened.locator(".field-error")).to_contain_text("Must be one of")
    expect(reopened.get_by_label("Keep the old value working for")).to_have_attribute("aria-invalid", "true")
    expect(page.locator("[data-token-value]")).to_have_count(0)
    assert api_status(server, issued.secret) == 200
