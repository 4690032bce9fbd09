"""A new user's tour in a real browser, at a laptop's and a phone's width, with and without
JavaScript: the actions menu and the page's one dialog, the value panel taking the focus, the
detail page's actions, a session that ended mid-page, dangerous organization changes, focus
after create and revoke, and a reload that must not create a second token. Screenshots go to
test-artifacts/screenshots/ (tour-*-1280.png, tour-*-390.png)."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

from tests.browser.helpers import api_status, choose, row, sign_in

pytestmark = pytest.mark.browser

SIZES = {"1280": {"width": 1280, "height": 800}, "390": {"width": 390, "height": 844}}


@pytest.fixture(params=list(SIZES))
def sized(request, browser, server):
    """A page at each width: (page, "1280" or "390")."""
    context = browser.new_context(base_url=server.url, viewport=SIZES[request.param], locale="en-US",
                                  timezone_id="UTC")
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=server.url)
    context.set_default_timeout(10_000)
    yield context.new_page(), request.param
    context.close()


@pytest.fixture(params=list(SIZES))
def no_js(request, browser, server):
    """A page without JavaScript at each width: (page, "1280" or "390")."""
    context = browser.new_context(base_url=server.url, viewport=SIZES[request.param], java_script_enabled=False)
    context.set_default_timeout(10_000)
    yield context.new_page(), request.param
    context.close()


@pytest.fixture
def acme(make):
    org = make.org("business", name="Acme")
    owner = make.member(org, "owner", email="olivia@acme.test")
    return {"org": org, "owner": owner}


def focused_inside(page: Page, selector: str) -> bool:
    """Whether focus lands inside `selector` within a second: the script moves it once htmx has
    settled the swap, a few milliseconds after the new content is visible."""
    try:
        page.wait_for_function(f"document.activeElement && document.activeElement.closest({selector!r}) !== null",
                               timeout=1_000)
    except PlaywrightTimeoutError:
        return False
    return True


def test_regenerate_from_the_menu_shows_the_value_above_the_list_and_focuses_it(sized, acme, make, server,
                                                                                 screenshot):
    page, width = sized
    for n in range(4):
        make.token(acme["owner"], name=f"Worker {n}")
    issued = make.token(acme["owner"], name="Billing sync")
    sign_in(page, acme["owner"])
    menu = row(page, "Billing sync").get_by_role("button", name="Actions for Billing sync")
    menu.click()
    items = row(page, "Billing sync").get_by_role("button").filter(has_not_text="Actions for")
    expect(items).to_have_text(["Edit", "Deactivate", "Regenerate", "Revoke"])
    screenshot(page, f"tour-actions-menu-{width}")
    row(page, "Billing sync").get_by_role("button", name="Regenerate", exact=True).click()
    dialog = page.get_by_role("dialog", name="Regenerate “Billing sync”?")
    dialog.get_by_label("Keep the old value working for").select_option(label="24 hours")
    dialog.get_by_role("button", name="Regenerate token").click()

    value = page.locator("[data-token-value]")
    expect(value).to_be_visible()
    expect(page.get_by_role("dialog")).to_have_count(0)
    # Above the list, never in a row; focused, inside a live region so it is announced.
    assert page.locator("#token-results [data-token-value]").count() == 0
    panel = page.locator("#value-panel")
    expect(panel).to_have_attribute("aria-live", "polite")
    assert focused_inside(page, ".secret-panel")
    expect(row(page, "Billing sync").get_by_text("old value valid until")).to_be_visible()
    copy = page.get_by_role("button", name="Copy")
    box, viewport = copy.bounding_box(), page.viewport_size
    assert box["x"] + box["width"] <= viewport["width"]
    screenshot(page, f"tour-regenerated-{width}", full_page=True)
    secret = value.inner_text().strip()
    assert api_status(server, secret) == 200 and api_status(server, issued.secret) == 200  # 24 h of grace


def test_the_detail_page_offers_the_same_actions(sized, acme, make, server, screenshot):
    page, width = sized
    issued = make.token(acme["owner"], name="Reporting")
    sign_in(page, acme["owner"])
    row(page, "Reporting").get_by_role("link", name="Reporting").click()
    actions = page.locator("#token-actions")
    expect(actions.get_by_role("button")).to_have_text(["Edit", "Deactivate", "Regenerate", "Revoke"])
    screenshot(page, f"tour-detail-{width}", full_page=True)

    actions.get_by_role("button", name="Deactivate").click()
    expect(page.get_by_text("Deactivated “Reporting”")).to_be_visible()
    expect(page.get_by_role("heading", name="Reporting", level=1)).to_be_visible()  # back on its page
    assert api_status(server, issued.secret) == 401
    page.locator("#token-actions").get_by_role("button", name="Reactivate").click()
    assert api_status(server, issued.secret) == 200

    page.locator("#token-actions").get_by_role("button", name="Revoke").click()
    page.get_by_role("dialog").get_by_role("button", name="Revoke token").click()
    expect(page.get_by_text("Revoked “Reporting”. It is listed under Deleted.")).to_be_visible()
    assert api_status(server, issued.secret) == 401


def test_a_session_that_ended_sends_the_filter_and_a_revoke_to_sign_in_and_back(sized, acme, make,
                                                                                 screenshot):
    page, width = sized
    make.token(acme["owner"], name="CI deploys")
    make.token(acme["owner"], name="Legacy importer")
    sign_in(page, acme["owner"])

    page.context.clear_cookies()  # the session ended (expired, or signed out elsewhere)
    page.get_by_label("Filter by name").fill("deploy")
    expect(page.get_by_role("button", name="Sign in")).to_be_visible()
    expect(page).to_have_url(re.compile(r"/login\?next=/settings/api-tokens\?name%3Ddeploy$"))
    expect(page.get_by_text("Please sign in to continue.")).to_be_visible()
    screenshot(page, f"tour-session-ended-{width}")
    page.get_by_label("Email").fill(acme["owner"].email)
    page.get_by_label("Password").fill(acme["owner"].password)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(re.compile(r"/settings/api-tokens\?name=deploy$"))
    expect(page.get_by_label("Filter by name")).to_have_value("deploy")

    page.goto("/settings/api-tokens")
    choose(page, "Legacy importer", "Revoke")
    dialog = page.get_by_role("dialog")
    expect(dialog).to_be_visible()
    page.context.clear_cookies()
    dialog.get_by_role("button", name="Revoke token").click()
    expect(page.get_by_role("button", name="Sign in")).to_be_visible()
    expect(page.locator("#toast")).to_be_hidden()  # no "CSRF session token is missing"
    page.get_by_label("Email").fill(acme["owner"].email)
    page.get_by_label("Password").fill(acme["owner"].password)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(re.compile(r"/settings/api-tokens$"))
    expect(row(page, "Legacy importer")).to_be_visible()  # nothing was revoked behind their back


def test_choosing_no_plan_says_how_many_tokens_stop_and_what_happened(sized, acme, make, server, screenshot):
    page, width = sized
    issued = [make.token(acme["owner"], name=f"Token {n}") for n in range(3)]
    sign_in(page, acme["owner"])
    page.get_by_role("link", name="Organization").click()
    page.get_by_label("Plan", exact=True).select_option("none")
    page.get_by_role("button", name="Save").click()
    question = page.get_by_role("region", name="Stop every token of Acme?")
    expect(question).to_contain_text("3 active tokens stop working now.")
    expect(question).to_be_focused()
    screenshot(page, f"tour-no-plan-confirm-{width}", full_page=True)
    assert api_status(server, issued[0].secret) == 200  # nothing saved yet

    question.get_by_role("button", name="Stop 3 tokens and save").click()
    expect(page.get_by_text("The plan is now No plan: 3 tokens stopped working")).to_be_visible()
    assert api_status(server, issued[0].secret) == 403
    screenshot(page, f"tour-no-plan-saved-{width}")


def test_revoking_more_than_ten_at_once_asks_to_type_the_number(sized, acme, make, server, screenshot):
    page, width = sized
    issued = [make.token(acme["owner"], name=f"Runner {n:02}") for n in range(11)]
    sign_in(page, acme["owner"])
    for n in range(11):
        page.get_by_role("checkbox", name=f"Select Runner {n:02}").check()
    page.get_by_role("button", name="Revoke selected").click()
    dialog = page.get_by_role("dialog", name="Revoke 11 selected tokens?")
    expect(dialog.get_by_label("Type 11 to confirm")).to_be_visible()
    dialog.get_by_label("Type 11 to confirm").fill("11")
    screenshot(page, f"tour-bulk-type-{width}")
    dialog.get_by_role("button", name="Revoke 11 tokens").click()
    expect(page.get_by_text("Revoked 11 tokens.")).to_be_visible()
    assert all(api_status(server, token.secret) == 401 for token in issued[:2])


def test_focus_after_create_and_after_revoke(sized, acme, make, screenshot):
    page, width = sized
    make.token(acme["owner"], name="Legacy importer")
    sign_in(page, acme["owner"])
    page.get_by_role("button", name="Generate token").click()
    page.get_by_label("Name", exact=True).fill("Fresh")
    page.get_by_label("Name", exact=True).press("Enter")
    expect(page.locator("[data-token-value]")).to_be_visible()
    assert focused_inside(page, ".secret-panel")  # not <body>
    screenshot(page, f"tour-focus-after-create-{width}")

    choose(page, "Legacy importer", "Revoke")
    page.get_by_role("dialog").get_by_role("button", name="Revoke token").click()
    notice = page.get_by_role("row", name=re.compile("“Legacy importer” stopped working"))
    expect(notice).to_be_focused()
    assert page.evaluate("document.activeElement !== document.body")
    notice.scroll_into_view_if_needed()
    screenshot(page, f"tour-focus-after-revoke-{width}")


def test_without_javascript_a_reload_after_create_makes_no_second_token(no_js, acme, make, screenshot):
    from shared.core.extensions import db
    from shared.models import ApiToken

    page, width = no_js
    page.goto("/login")
    page.get_by_label("Email").fill(acme["owner"].email)
    page.get_by_label("Password").fill(acme["owner"].password)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("button", name="Generate token").click()
    expect(page).to_have_url(re.compile(r"/settings/api-tokens/new$"))  # no stray "?"
    page.get_by_label("Name", exact=True).fill("Nightly backup")
    page.get_by_role("button", name="Generate token").click()
    value = page.locator("[data-token-value]").inner_text().strip()
    assert re.fullmatch(r"kw_[0-9a-f]{64}", value)

    page.reload()  # the browser posts the form again
    expect(page.get_by_text("“Nightly backup” was already created by this form.")).to_be_visible()
    expect(page.locator("[data-token-value]")).to_have_count(0)
    assert value not in page.content()
    screenshot(page, f"tour-no-js-reload-{width}")
    count = make.run(lambda: db.session.query(ApiToken).filter_by(name="Nightly backup").count())
    assert count == 1

    # The actions menu works without JavaScript too (a popover needs none).
    page.get_by_role("button", name="Actions for Nightly backup").click()
    row(page, "Nightly backup").get_by_role("button", name="Revoke", exact=True).click()
    expect(page.get_by_role("heading", name="Revoke “Nightly backup”?")).to_be_visible()
    page.get_by_role("button", name="Revoke token").click()
    expect(page.get_by_text("Revoked “Nightly backup”. It is listed under Deleted.")).to_be_visible()
