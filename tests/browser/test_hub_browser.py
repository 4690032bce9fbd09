"""The partner hub and the Partners page in a real browser, used by labels and button names.

A partner user signs in to the hub, generates a token, uses it and revokes it; they never see
staff tokens or another partner's; the portal's managers see partner tokens marked as such; an
owner creates a partner and invites its user on the Partners page (who accepts with her own
password), and removing the partner stops the user's token at once.
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from dataclasses import dataclass

import pytest
from playwright.sync_api import Page, expect

from tests.browser.helpers import api_status, choose, row, sign_in_exact_heading
from tests.conftest import settled

pytestmark = pytest.mark.browser


@dataclass
class People:
    owner: object
    paula: object  # partner_admin of Globex
    pat: object  # partner_member of Globex
    ian: object  # partner_admin of Initech


def _add_documents(make, org, partners: dict[str, int]) -> None:
    from shared.core.extensions import db
    from shared.models import Document

    def apply():
        db.session.add_all([
            Document(organization_id=org.id, title="Staff plan"),
            Document(organization_id=org.id, title="Globex brief", partner_id=partners["Globex"]),
            Document(organization_id=org.id, title="Initech brief", partner_id=partners["Initech"]),
        ])
        db.session.commit()

    make.run(apply)


@pytest.fixture
def people(make) -> People:
    org = make.org("business", name="Acme")
    partners = {name: make.partner(org, name) for name in ("Globex", "Initech")}
    _add_documents(make, org, partners)
    return People(
        owner=make.member(org, "owner", email="olivia@acme.test"),
        paula=make.member(org, "partner_admin", partner_id=partners["Globex"], email="paula@globex.test"),
        pat=make.member(org, "partner_member", partner_id=partners["Globex"], email="pat@globex.test"),
        ian=make.member(org, "partner_admin", partner_id=partners["Initech"], email="ian@initech.test"),
    )


def document_titles(server, secret: str) -> set[str]:
    request = urllib.request.Request(server.url + "/api/v1/documents", headers={"Authorization": f"Bearer {secret}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return {item["title"] for item in json.load(response)["items"]}


def sign_out(page: Page) -> None:
    page.get_by_role("navigation", name="Main").get_by_role("button", name="Sign out").click()
    expect(page.get_by_label("Email")).to_be_visible()


def test_partner_signs_in_to_the_hub_generates_uses_and_revokes_a_token(page, people, server, screenshot):
    sign_in_exact_heading(page, people.paula)
    expect(page).to_have_url(re.compile(r"/hub/api-tokens$"))
    navigation = page.get_by_role("navigation", name="Main")
    expect(navigation).to_contain_text("Partner hub · Globex")
    expect(navigation.get_by_role("link", name="API Tokens")).to_be_visible()
    expect(navigation.get_by_role("link", name="Members")).to_have_count(0)

    page.get_by_role("button", name="Generate token").click()
    page.wait_for_load_state()  # htmx is in: the form posts in place, so a reload never re-posts it
    expect(page.get_by_label("documents read", exact=True)).to_be_checked()
    expect(page.get_by_label("documents write", exact=True)).not_to_be_checked()
    page.get_by_label("Name", exact=True).fill("Globex sync")
    page.get_by_label("Name", exact=True).press("Enter")
    value = page.locator("[data-token-value]").inner_text().strip()
    assert re.fullmatch(r"kw_[0-9a-f]{64}", value)
    expect(page.get_by_text("will not be shown again")).to_be_visible()
    page.get_by_role("button", name="Copy").click()
    expect(page.get_by_text("Copied to clipboard")).to_be_visible()
    assert page.evaluate("navigator.clipboard.readText()") == value
    screenshot(page, "hub-show-once")

    assert document_titles(server, value) == {"Globex brief"}  # only the partner's documents
    def usage_shown() -> str:
        page.reload()
        return row(page, "Globex sync").locator(".usage-count").inner_text().strip()

    # The server's usage flushers write the request within about two intervals.
    assert settled(usage_shown, "1") == "1"
    expect(page.locator("[data-token-value]")).to_have_count(0)
    expect(row(page, "Globex sync")).to_contain_text("just now")  # last used

    page.get_by_label("Filter by name").fill("nothing like it")
    expect(page.get_by_text("No tokens match these filters")).to_be_visible()
    page.get_by_label("Filter by name").fill("sync")
    expect(row(page, "Globex sync")).to_be_visible()

    choose(page, "Globex sync", "Deactivate")
    expect(row(page, "Globex sync").get_by_text("Inactive", exact=True)).to_be_visible()
    assert api_status(server, value) == 401
    choose(page, "Globex sync", "Reactivate")
    expect(row(page, "Globex sync").get_by_text("Active", exact=True)).to_be_visible()
    assert api_status(server, value) == 200
    screenshot(page, "hub-api-tokens")

    choose(page, "Globex sync", "Revoke")
    dialog = page.get_by_role("dialog")
    expect(dialog).to_contain_text("Globex sync")
    dialog.get_by_role("button", name="Cancel").click()
    assert api_status(server, value) == 200
    choose(page, "Globex sync", "Revoke")
    page.get_by_role("dialog").get_by_role("button", name="Revoke token").click()
    expect(page.get_by_role("button", name="Actions for Globex sync")).to_have_count(0)
    assert api_status(server, value) == 401
    page.get_by_role("link", name="Deleted").click()
    expect(row(page, "Globex sync")).to_contain_text("Revoked")


def test_regenerate_in_the_hub(page, people, server, make):
    issued = make.token(people.paula, name="Importer")
    sign_in_exact_heading(page, people.paula)
    choose(page, "Importer", "Regenerate")
    page.get_by_role("dialog").get_by_role("button", name="Regenerate token").click()
    value = page.locator("[data-token-value]").inner_text().strip()
    assert value != issued.secret
    assert api_status(server, issued.secret) == 401 and api_status(server, value) == 200


def test_a_partner_sees_only_their_own_tokens_and_the_portal_admin_sees_theirs(page, people, server, make,
                                                                               screenshot):
    make.token(people.owner, name="Owner deploys")
    make.token(people.pat, name="Pat's reader")
    make.token(people.ian, name="Initech sync")
    paula = make.token(people.paula, name="Paula's sync")

    sign_in_exact_heading(page, people.paula)
    expect(page.locator("tbody tr")).to_have_count(1)
    expect(row(page, "Paula's sync")).to_be_visible()
    for hidden in ("Owner deploys", "Pat's reader", "Initech sync"):
        expect(page.get_by_text(hidden)).to_have_count(0)
    page.get_by_role("link", name="Deleted").click()
    expect(page.get_by_text("No deleted tokens")).to_be_visible()
    response = page.goto("/settings/api-tokens")
    assert response.status == 403
    expect(page.get_by_role("heading", name="Not allowed")).to_be_visible()
    page.goto("/hub/api-tokens")
    sign_out(page)

    sign_in_exact_heading(page, people.owner)
    expect(row(page, "Paula's sync")).to_contain_text("Partner: Globex")
    expect(row(page, "Initech sync")).to_contain_text("Partner: Initech")
    expect(row(page, "Owner deploys")).not_to_contain_text("Partner:")
    screenshot(page, "portal-partner-tokens")
    choose(page, "Paula's sync", "Revoke")
    page.get_by_role("dialog").get_by_role("button", name="Revoke token").click()
    expect(page.get_by_role("button", name="Actions for Paula's sync")).to_have_count(0)
    assert api_status(server, paula.secret) == 401
    assert page.goto("/hub/api-tokens").status == 403


def test_owner_adds_a_partner_invites_its_user_and_removing_the_partner_stops_the_token(browser, page, people,
                                                                                        server, screenshot):
    sign_in_exact_heading(page, people.owner)
    page.get_by_role("link", name="Partners").click()
    expect(page.get_by_role("heading", name="Partners", exact=True)).to_be_visible()
    page.get_by_text("Add partner", exact=True).click()
    page.get_by_label("Partner name").fill("Umbrella")
    page.get_by_role("button", name="Create partner").click()
    umbrella = page.get_by_role("region", name="Umbrella")
    expect(umbrella).to_contain_text("No users yet")

    umbrella.get_by_text("Invite partner user").click()
    umbrella.get_by_label("Email").fill("alice@umbrella.test")
    umbrella.get_by_label("Role").select_option("partner_admin")
    umbrella.get_by_role("button", name="Send invitation").click()
    link = page.locator("[data-invitation-link]").inner_text().strip()
    expect(page.get_by_text("pass this link on to alice@umbrella.test yourself")).to_be_visible()
    umbrella = page.get_by_role("region", name="Umbrella")
    pending = umbrella.get_by_role("table", name="Pending invitations for Umbrella")
    expect(pending.get_by_role("row").filter(has_text="alice@umbrella.test")).to_contain_text("Partner admin")
    expect(pending.get_by_role("button", name="Resend")).to_be_visible()
    expect(pending.get_by_role("button", name="Revoke")).to_be_visible()
    screenshot(page, "partners", full_page=True)

    # Alice, in her own browser, opens the link, chooses her password and lands in the hub.
    alice_context = browser.new_context(base_url=server.url)
    try:
        alice = alice_context.new_page()
        alice.goto(link)
        alice.get_by_label("Name").fill("Alice Umbrella")
        alice.get_by_label("Password").fill("a long enough password")
        alice.get_by_role("button", name="Accept invitation").click()
        expect(alice.get_by_role("navigation", name="Main")).to_contain_text("Partner hub · Umbrella")
        alice.get_by_role("button", name="Generate token").click()
        alice.wait_for_load_state()
        alice.get_by_label("Name", exact=True).fill("Umbrella feed")
        alice.get_by_label("Name", exact=True).press("Enter")
        secret = alice.locator("[data-token-value]").inner_text().strip()
        assert document_titles(server, secret) == set()  # Umbrella has no documents
    finally:
        alice_context.close()

    page.reload()
    umbrella = page.get_by_role("region", name="Umbrella")
    expect(umbrella).to_contain_text("1 active token")
    umbrella.get_by_role("button", name="Remove partner").click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_contain_text("Remove Umbrella?")
    dialog.get_by_role("button", name="Cancel").click()
    assert api_status(server, secret) == 200
    umbrella.get_by_role("button", name="Remove partner").click()
    page.get_by_role("dialog").get_by_role("button", name="Remove partner").click()
    expect(page.get_by_text("Removed the partner Umbrella and its 1 user.")).to_be_visible()
    expect(page.get_by_role("region", name="Umbrella")).to_have_count(0)
    assert api_status(server, secret) == 401


def test_removing_a_partner_user_on_the_partners_page_stops_their_token(page, people, server, make):
    issued = make.token(people.pat, name="Pat's reader")
    sign_in_exact_heading(page, people.owner)
    page.get_by_role("link", name="Partners").click()
    globex = page.get_by_role("region", name="Globex")
    pat_row = globex.get_by_role("row").filter(has_text="pat@globex.test")
    pat_row.get_by_role("button", name="Remove").click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_contain_text("Their 1 token stops working immediately.")
    dialog.get_by_role("button", name="Remove user").click()
    expect(page.get_by_text("Removed pat@globex.test from Globex.")).to_be_visible()
    expect(globex.get_by_role("row").filter(has_text="pat@globex.test")).to_have_count(0)
    assert api_status(server, issued.secret) == 401
