"""Members join by invitation, in a real browser: the owner invites, the link is shown once with
Resend and Revoke beside the pending invitation, a newcomer chooses their own name and password,
and a person who already has an account signs in as it and accepts."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

pytestmark = pytest.mark.browser


def sign_in(page: Page, email: str, password: str) -> None:
    page.goto("/login")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()


def invite(page: Page, email: str, role: str) -> str:
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Members").click()
    page.get_by_text("Invite member", exact=True).click()
    page.get_by_label("Email").fill(email)
    page.get_by_label("Role", exact=True).select_option(role)
    page.get_by_role("button", name="Send invitation").click()
    expect(page.get_by_role("heading", name=f"Invitation for {email}")).to_be_visible()
    return page.locator("[data-invitation-link]").inner_text().strip()


@pytest.fixture
def acme(make):
    org = make.org("business", name="Acme")
    return org, make.member(org, "owner", email="olivia@acme.test")


def test_a_newcomer_accepts_with_their_own_password_after_a_resend(browser, page, server, acme, screenshot):
    _, owner = acme
    sign_in(page, owner.email, owner.password)
    first = invite(page, "nia@example.test", "editor")
    row = page.get_by_role("row").filter(has_text="nia@example.test")
    expect(row).to_contain_text("Editor")
    screenshot(page, "members-invited", full_page=True)
    row.get_by_role("button", name="Resend").click()
    link = page.locator("[data-invitation-link]").inner_text().strip()
    assert link != first

    newcomer = browser.new_context(base_url=server.url).new_page()
    try:
        newcomer.goto(first)
        expect(newcomer.get_by_role("heading", name="This invitation link does not work")).to_be_visible()
        newcomer.goto(link)
        expect(newcomer.get_by_role("heading", name="Join Acme")).to_be_visible()
        screenshot(newcomer, "invitation-accept")
        newcomer.get_by_label("Name").fill("Nia Newton")
        newcomer.get_by_label("Password").fill("short")
        newcomer.get_by_role("button", name="Accept invitation").click()
        expect(newcomer.get_by_text("At least 8 characters", exact=True)).to_be_visible()
        newcomer.get_by_label("Password").fill("nia's own long password")
        newcomer.get_by_role("button", name="Accept invitation").click()
        expect(newcomer.get_by_text("Welcome to Acme: you joined as editor.")).to_be_visible()
        expect(newcomer.get_by_role("heading", name="API tokens", exact=True)).to_be_visible()
    finally:
        newcomer.context.close()

    page.goto("/settings/members")
    expect(page.get_by_role("row").filter(has_text="nia@example.test")).to_contain_text("Nia Newton")
    expect(page.get_by_role("heading", name="Pending invitations")).to_have_count(0)


def test_an_existing_account_signs_in_to_accept_and_a_revoked_link_stops(browser, page, server, make, acme):
    _org, owner = acme
    bob = make.member(make.org("business", name="Globex"), "editor", email="bob@globex.test")
    sign_in(page, owner.email, owner.password)
    link = invite(page, bob.email, "maintainer")
    revoked = invite(page, "someone@example.test", "viewer")
    someone = page.get_by_role("row").filter(has_text="someone@example.test")
    someone.get_by_role("button", name="Revoke").click()
    expect(page.get_by_text("Revoked the invitation for someone@example.test")).to_be_visible()

    other = browser.new_context(base_url=server.url).new_page()
    try:
        other.goto(revoked)
        expect(other.get_by_role("heading", name="This invitation link does not work")).to_be_visible()
        other.goto(link)
        expect(other.get_by_label("Password")).to_have_count(0)  # no password can be set for Bob's account
        other.get_by_role("link", name="Sign in to accept").click()
        other.get_by_label("Email").fill(bob.email)
        other.get_by_label("Password").fill(bob.password)
        other.get_by_role("button", name="Sign in").click()
        expect(other.get_by_role("heading", name="Join Acme")).to_be_visible()
        other.get_by_role("button", name="Accept invitation").click()
        expect(other.get_by_text("Welcome to Acme: you joined as maintainer.")).to_be_visible()
        switcher = other.get_by_label("Organization")
        expect(switcher.locator("option")).to_have_text(["Globex", "Acme"])
    finally:
        other.context.close()
