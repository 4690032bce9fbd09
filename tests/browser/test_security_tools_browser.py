"""Security team tools in a real browser: `Revoke selected` on three rows (the dry run in
a dialog, then the revocation), the Members page's removal dialog listing the member's tokens and
transferring them so they keep working, the Canary checkbox, and Narrow to what it used."""

from __future__ import annotations

import urllib.request

import pytest
from playwright.sync_api import Page, expect

from shared.models import ApiToken
from tests.browser.helpers import api_status, row, sign_in, watch_csp
from tests.conftest import settled

pytestmark = pytest.mark.browser


@pytest.fixture
def acme(make):
    org = make.org("business", name="Acme")
    return {
        "org": org,
        "owner": make.member(org, "owner", email="olivia@acme.test"),
        "admin": make.member(org, "admin", email="adam@acme.test"),
        "leaver": make.member(org, "admin", email="lee@acme.test"),
        "editor": make.member(org, "editor", email="eddie@acme.test"),
    }


def live(make, public_id: str) -> bool:
    return make.get_token(public_id).revoked_at is None


def test_revoke_selected_on_three_rows(page: Page, acme, make, server, screenshot):
    names = ("CI deploys", "Nightly export", "Old laptop", "Keep me")
    issued = {name: make.token(acme["editor"] if name == "Old laptop" else acme["admin"], name=name)
              for name in names}
    refused = watch_csp(page)
    sign_in(page, acme["admin"])
    for name in ("CI deploys", "Nightly export", "Old laptop"):
        page.get_by_role("checkbox", name=f"Select {name}").check()
    page.get_by_role("button", name="Revoke selected").click()

    dialog = page.get_by_role("dialog", name="Revoke 3 selected tokens?")
    expect(dialog).to_be_visible()
    for name in ("CI deploys", "Nightly export", "Old laptop"):
        expect(dialog.get_by_role("row").filter(has_text=name)).to_have_count(1)
    expect(dialog.get_by_role("row").filter(has_text="Keep me")).to_have_count(0)
    screenshot(page, "bulk-revoke-selected-dialog")
    assert all(live(make, issued[name].id) for name in names)  # the dry run changed nothing

    dialog.get_by_role("button", name="Revoke 3 tokens").click()
    expect(page.get_by_text("Revoked 3 tokens.")).to_be_visible()
    for name in ("CI deploys", "Nightly export", "Old laptop"):
        expect(row(page, name)).to_have_count(0)
        assert not live(make, issued[name].id) and api_status(server, issued[name].secret) == 401
    expect(row(page, "Keep me")).to_have_count(1)
    assert api_status(server, issued["Keep me"].secret) == 200
    screenshot(page, "bulk-revoke-selected-done")
    assert refused == []


def test_the_removal_dialog_lists_the_members_tokens_and_the_transfer_keeps_them_working(
        page: Page, acme, make, server, screenshot):
    robot = make.token(acme["leaver"], name="Deploy robot", type="organization")
    laptop = make.token(acme["leaver"], name="Lee's laptop")
    refused = watch_csp(page)
    sign_in(page, acme["owner"])
    page.get_by_role("link", name="Members").click()
    page.get_by_role("row").filter(has_text="lee@acme.test").get_by_role("button", name="Remove").click()

    dialog = page.get_by_role("dialog", name="Remove lee?")
    expect(dialog).to_be_visible()
    expect(dialog.get_by_role("list", name="Organization and project tokens of lee")).to_contain_text("Deploy robot")
    expect(dialog.get_by_role("list", name="Personal tokens of lee")).to_contain_text("Lee's laptop")
    dialog.get_by_label("Transfer organization and project tokens to").select_option(label="adam (adam@acme.test) · admin")
    screenshot(page, "member-removal-transfer-dialog")
    dialog.get_by_role("button", name="Remove member").click()

    expect(page.get_by_text("Removed lee@acme.test. 1 token now belongs to adam@acme.test")).to_be_visible()
    expect(page.get_by_role("row").filter(has_text="lee@acme.test")).to_have_count(0)
    assert api_status(server, robot.secret) == 200  # transferred: keeps working
    assert api_status(server, laptop.secret) == 401  # personal: stopped with the membership
    request = urllib.request.Request(server.url + "/api/v1/me", headers={"Authorization": f"Bearer {robot.secret}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        assert b"adam@acme.test" in response.read()
    assert refused == []


def test_a_canary_is_created_with_its_checkbox_and_shows_its_badge(page: Page, acme, make, server, screenshot):
    security = make.member(acme["org"], "security_manager", email="sam@acme.test")
    make.token(security, name="Sam's scripts")
    sign_in(page, security)
    page.get_by_role("button", name="Generate token").click()
    page.get_by_label("Name").fill("backup-aws-keys")
    page.get_by_text("Advanced", exact=True).click()  # out of the way until asked for
    page.get_by_label("Canary (alerts when used, grants nothing)").check()
    page.get_by_role("button", name="Generate token").click()
    secret = page.locator("[data-token-value]").inner_text().strip()
    assert api_status(server, secret) == 401
    canary = next(t for t in make.rows(ApiToken) if t.name == "backup-aws-keys")
    assert settled(lambda: make.get_token(canary.public_id).canary_trips, 1) == 1  # the server's flusher
    page.goto("/settings/api-tokens")
    the_row = row(page, "backup-aws-keys")
    expect(the_row).to_contain_text("Canary")
    expect(the_row).to_contain_text("tripped 1 time")
    screenshot(page, "canary-row")


def test_narrow_to_what_it_used_after_a_confirm(page: Page, acme, make, server):
    token = make.token(acme["owner"], name="Reporting", scopes=["documents", "templates"],
                       permissions=["read", "write"])
    request = urllib.request.Request(server.url + "/api/v1/documents",
                                     headers={"Authorization": f"Bearer {token.secret}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200
    assert settled(lambda: make.get_token(token.id).usage_count, 1) == 1  # observed use, written by the flusher
    sign_in(page, acme["owner"])
    page.get_by_role("link", name="Reporting").click()
    page.get_by_role("button", name="Narrow to what it used").click()
    dialog = page.get_by_role("dialog", name="Narrow “Reporting” to what it used?")
    expect(dialog).to_contain_text("templates")
    dialog.get_by_role("button", name="Narrow token").click()
    expect(page.get_by_text("Narrowed “Reporting”: removed documents write, templates read, templates write.")
           ).to_be_visible()
    assert make.get_token(token.id).rights == {"documents": ["read"]}
