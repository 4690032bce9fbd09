"""The API Tokens page in a real browser, used as people use it: by labels and button names."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

import pytest
from playwright.sync_api import Page, expect

from tests.browser.helpers import api_status, choose, row, sign_in

pytestmark = pytest.mark.browser


@dataclass
class Staff:
    owner: object
    viewer: object
    editor: object


def _set(make, public_id: str, **values) -> None:
    """Give a seeded token some history (usage, last use) so the list looks like real life."""
    from sqlalchemy import update

    from shared.core.extensions import db
    from shared.models import ApiToken

    def apply():
        db.session.execute(update(ApiToken).where(ApiToken.public_id == public_id).values(**values))
        db.session.commit()

    make.run(apply)


def _rename(make, member, display_name: str) -> None:
    from shared.core.extensions import db
    from shared.models import User

    def apply():
        db.session.get(User, member.user_id).display_name = display_name
        db.session.commit()

    make.run(apply)


@pytest.fixture
def staff(make):
    from datetime import UTC, datetime, timedelta

    org = make.org("business", name="Acme")
    make.project(org, "Website")
    owner = make.member(org, "owner", email="olivia@acme.test")
    editor = make.member(org, "editor", email="eddie@acme.test")
    viewer = make.member(org, "viewer", email="vera@acme.test")
    _rename(make, owner, "Olivia Owner")
    _rename(make, editor, "Eddie Editor")
    now = datetime.now(UTC)
    seeded = make.token(owner, name="CI deploys", description="GitHub Actions release pipeline",
                        scopes=["documents", "projects"], permissions=["read", "write"])
    _set(make, seeded.id, usage_count=18342, documents_processed=1210, last_used_at=now - timedelta(hours=3),
         last_used_ip="203.0.113.7")
    analytics = make.token(owner, name="Analytics export", scopes=["analytics"], expires_in_days=5)
    _set(make, analytics.id, usage_count=96, last_used_at=now - timedelta(days=5))
    make.token(editor, name="Local scripts", scopes=["documents", "templates"], permissions=["read", "write"])
    return Staff(owner=owner, viewer=viewer, editor=editor)


def mark_page(page: Page) -> None:
    """A marker that survives htmx swaps but not a full page load."""
    page.evaluate("window.__keywardMarker = 'still here'")


def assert_no_page_load(page: Page) -> None:
    assert page.evaluate("window.__keywardMarker") == "still here"


def test_sign_in_shows_navigation_and_tokens(page, staff, screenshot):
    sign_in(page, staff.owner)
    navigation = page.get_by_role("navigation", name="Main")
    expect(navigation.get_by_role("button", name="Sign out")).to_be_visible()
    expect(page.get_by_role("link", name="API Tokens")).to_be_visible()
    expect(row(page, "CI deploys")).to_contain_text("kw_••••")
    expect(row(page, "CI deploys").get_by_text("3 hours ago")).to_have_attribute("title", re.compile(r"UTC"))
    expect(row(page, "Analytics export")).to_contain_text("Expires soon")
    expect(row(page, "Local scripts")).to_contain_text("by Eddie Editor")
    screenshot(page, "api-tokens")


def test_generate_copy_and_the_value_is_gone_after_reload(page, staff, server, screenshot):
    sign_in(page, staff.editor)
    page.get_by_role("button", name="Generate token").click()
    expect(page.get_by_label("documents read", exact=True)).to_be_checked()
    expect(page.get_by_label("documents write", exact=True)).not_to_be_checked()
    page.get_by_label("Name", exact=True).fill("Nightly backup")
    page.get_by_label("Name", exact=True).press("Enter")

    value_element = page.locator("[data-token-value]")
    expect(value_element).to_be_visible()
    value = value_element.inner_text().strip()
    assert re.fullmatch(r"kw_[0-9a-f]{64}", value)
    expect(page.get_by_text("will not be shown again")).to_be_visible()
    screenshot(page, "show-once")

    page.get_by_role("button", name="Copy").click()
    expect(page.get_by_text("Copied to clipboard")).to_be_visible()
    assert page.evaluate("navigator.clipboard.readText()") == value
    assert api_status(server, value) == 200

    page.reload()
    expect(row(page, "Nightly backup")).to_be_visible()
    expect(page.locator("[data-token-value]")).to_have_count(0)
    assert value not in page.content()


def test_filter_by_name_narrows_rows_and_survives_reload_and_back(page, staff):
    sign_in(page, staff.owner)
    expect(page.locator("tbody tr")).to_have_count(3)
    page.get_by_label("Filter by name").fill("deploy")
    expect(page.locator("tbody tr")).to_have_count(1)
    expect(row(page, "CI deploys")).to_be_visible()
    expect(page).to_have_url(re.compile(r"name=deploy"))

    page.reload()
    expect(page.get_by_label("Filter by name")).to_have_value("deploy")
    expect(page.locator("tbody tr")).to_have_count(1)

    page.go_back()
    expect(page.locator("tbody tr")).to_have_count(3)
    expect(page.get_by_label("Filter by name")).to_have_value("")


def test_deactivate_and_reactivate_swap_only_the_row(page, staff, server, make):
    issued = make.token(staff.owner, name="Webhook relay")
    sign_in(page, staff.owner)
    mark_page(page)
    target = row(page, "Webhook relay")
    choose(page, "Webhook relay", "Deactivate")
    expect(target.get_by_text("Inactive", exact=True)).to_be_visible()
    # Focus comes back to the row's menu, which now offers Reactivate.
    expect(target.get_by_role("button", name="Actions for Webhook relay")).to_be_focused()
    assert api_status(server, issued.secret) == 401

    choose(page, "Webhook relay", "Reactivate")
    expect(target.get_by_text("Active", exact=True)).to_be_visible()
    target.get_by_role("button", name="Actions for Webhook relay").click()
    expect(target.get_by_role("button", name="Deactivate")).to_be_visible()
    assert_no_page_load(page)
    assert api_status(server, issued.secret) == 200


def test_revoke_cancel_keeps_the_token_and_confirm_kills_it(page, staff, server, make, screenshot):
    issued = make.token(staff.owner, name="Legacy importer")
    sign_in(page, staff.owner)
    mark_page(page)

    choose(page, "Legacy importer", "Revoke")
    dialog = page.get_by_role("dialog")
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text("Legacy importer")
    screenshot(page, "confirm-dialog")
    dialog.get_by_role("button", name="Cancel").click()
    expect(page.get_by_role("dialog")).to_have_count(0)
    expect(row(page, "Legacy importer")).to_be_visible()
    assert api_status(server, issued.secret) == 200

    choose(page, "Legacy importer", "Revoke")
    page.get_by_role("dialog").get_by_role("button", name="Revoke token").click()
    # The row becomes a notice naming the token, which takes the focus; the count follows.
    notice = page.get_by_role("row", name=re.compile("“Legacy importer” stopped working"))
    expect(notice).to_be_focused()
    expect(page.get_by_role("button", name="Actions for Legacy importer")).to_have_count(0)
    expect(page.get_by_text("1–3 of 3 tokens")).to_be_visible()
    assert_no_page_load(page)
    assert api_status(server, issued.secret) == 401

    page.get_by_role("link", name="Deleted").click()
    expect(row(page, "Legacy importer")).to_contain_text("Revoked")
    expect(row(page, "Legacy importer").get_by_role("button")).to_have_count(0)


def test_regenerate_shows_the_new_value_once_and_the_old_one_stops(page, staff, server, make):
    issued = make.token(staff.owner, name="Billing sync")
    sign_in(page, staff.owner)
    choose(page, "Billing sync", "Regenerate")
    page.get_by_role("dialog").get_by_role("button", name="Regenerate token").click()
    value_element = page.locator("[data-token-value]")
    expect(value_element).to_be_visible()
    value = value_element.inner_text().strip()
    assert value != issued.secret
    assert api_status(server, issued.secret) == 401
    assert api_status(server, value) == 200
    page.reload()
    expect(page.locator("[data-token-value]")).to_have_count(0)


def test_edit_in_place_changes_the_row(page, staff, make, screenshot):
    make.token(staff.owner, name="Docs reader")
    sign_in(page, staff.owner)
    mark_page(page)
    choose(page, "Docs reader", "Edit")
    form = page.locator("tr.edit-row")
    form.get_by_label("Name", exact=True).fill("Docs reader (prod)")
    form.get_by_label("templates read", exact=True).check()
    screenshot(page, "edit-row")
    form.get_by_role("button", name="Save changes").click()
    expect(row(page, "Docs reader (prod)")).to_contain_text("templates")
    assert_no_page_load(page)


def test_bad_input_shows_errors_beside_the_fields(page, staff, screenshot):
    sign_in(page, staff.owner)
    page.get_by_role("button", name="Generate token").click()
    page.get_by_label("Name", exact=True).fill("Broken")
    page.get_by_label("IP allowlist").fill("10.0.0.0/33")
    page.get_by_label("Expiration").select_option("custom")
    page.get_by_label("Custom date").fill("2001-01-01")
    page.get_by_role("button", name="Generate token").click()
    expect(page.get_by_text("is not an IP address or CIDR range")).to_be_visible()
    expect(page.get_by_text("Choose a date after today")).to_be_visible()
    expect(page.get_by_label("IP allowlist")).to_have_attribute("aria-invalid", "true")
    expect(page.get_by_label("Name", exact=True)).to_have_value("Broken")
    expect(page.locator("[data-token-value]")).to_have_count(0)
    screenshot(page, "form-errors", full_page=True)


def test_a_viewer_cannot_reach_the_page(page, staff, server):
    page.goto("/login")
    page.get_by_label("Email").fill(staff.viewer.email)
    page.get_by_label("Password").fill(staff.viewer.password)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("button", name="Sign out")).to_be_visible()
    expect(page.get_by_role("link", name="API Tokens")).to_have_count(0)
    response = page.goto("/settings/api-tokens")
    assert response.status == 403
    expect(page.get_by_role("heading", name="Not allowed")).to_be_visible()


def test_no_inline_scripts_or_handlers(page, staff):
    sign_in(page, staff.owner)
    found = page.evaluate("""() => {
        const inline = [...document.scripts].filter(s => !s.src).length;
        const handlers = [...document.querySelectorAll('*')].filter(
            el => [...el.attributes].some(a => a.name.startsWith('on'))).length;
        return {inline, handlers, csrf: JSON.parse(document.body.getAttribute('hx-headers'))['X-CSRFToken'] ? 1 : 0};
    }""")
    assert found == {"inline": 0, "handlers": 0, "csrf": 1}
    assert json.dumps(found)


def test_settings_pages_for_an_owner(page, staff, screenshot):
    sign_in(page, staff.owner)
    page.get_by_role("link", name="Members").click()
    expect(page.get_by_role("heading", name="Members")).to_be_visible()
    expect(page.get_by_role("row").filter(has_text="eddie@acme.test")).to_be_visible()
    screenshot(page, "members")
    page.get_by_role("link", name="Organization").click()
    expect(page.get_by_label("Plan", exact=True)).to_have_value("business")
    screenshot(page, "organization", full_page=True)
    page.get_by_role("link", name="Audit log").click()
    expect(page.get_by_role("row").filter(has_text="token.created").first).to_be_visible()
    screenshot(page, "audit-log")
