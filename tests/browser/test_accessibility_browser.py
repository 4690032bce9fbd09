"""axe-core on every page of the portal and the hub, signed in and out, in a real browser: no
serious or critical violation (colour contrast, names, labels, landmarks, ARIA), also with the
actions menu and a confirmation dialog open, and at a phone's width."""

from __future__ import annotations

import pytest
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import Page, expect

from tests.browser.helpers import choose, sign_in

pytestmark = pytest.mark.browser

AXE = Axe()
BLOCKING = ("serious", "critical")


def violations(page: Page) -> list[str]:
    """axe's serious and critical findings on the page as it is now, one line each."""
    results = AXE.run(page, options={"resultTypes": ["violations"]}).response
    return [f"{v['id']} ({v['impact']}): {v['help']} at {[n['target'] for n in v['nodes']][:4]}"
            for v in results["violations"] if v["impact"] in BLOCKING]


def check(page: Page, what: str, found: dict[str, list[str]]) -> None:
    problems = violations(page)
    if problems:
        found[what] = problems


@pytest.fixture
def acme(make):
    from shared.audit.record import Actor
    from shared.core.extensions import db
    from shared.models import Membership
    from shared.notifications import notices
    from shared.tokens import access, lifecycle

    org = make.org("business", name="Acme")
    make.project(org, "Website")
    partner_id = make.partner(org, "Globex")
    people = {
        "owner": make.member(org, "owner", email="olivia@acme.test"),
        "editor": make.member(org, "editor", email="eddie@acme.test"),
        "viewer": make.member(org, "viewer", email="vera@acme.test"),
        "partner": make.member(org, "partner_admin", partner_id=partner_id, email="paula@globex.test"),
    }
    tokens = {
        "deploys": make.token(people["owner"], name="CI deploys", description="GitHub Actions releases",
                              scopes=["documents", "projects"], permissions=["read", "write"]),
        "soon": make.token(people["owner"], name="Analytics export", scopes=["analytics"], expires_in_days=3),
        "local": make.token(people["editor"], name="Local scripts"),
        "globex": make.token(people["partner"], name="Globex sync"),
    }

    def history():
        owner = Actor(membership=db.session.get(Membership, people["owner"].id))
        lifecycle.regenerate_token(owner, access.get_token_for(owner, tokens["deploys"].id), "24h")
        lifecycle.revoke_token(owner, access.get_token_for(owner, make.token(people["owner"], name="Old").id))
        for who, token in (("owner", "deploys"), ("partner", "globex")):
            notices.notify([people[who].user_id], org.id, "expiring_7d", "A token expires soon",
                           make.get_token(tokens[token].id).id)
        db.session.commit()

    make.run(history)

    def webhook():
        from shared.webhooks import endpoints

        owner = Actor(membership=db.session.get(Membership, people["owner"].id))
        return endpoints.create_endpoint(owner, "https://93.184.216.34/keyward", ["token.created"])[0].public_id

    return {"org": org, "people": people, "tokens": tokens, "webhook": make.run(webhook)}


def test_every_portal_page_signed_in_has_no_serious_violation(page, acme):
    found: dict[str, list[str]] = {}
    owner, tokens = acme["people"]["owner"], acme["tokens"]
    sign_in(page, owner)
    check(page, "tokens", found)
    page.get_by_role("button", name="Actions for CI deploys").click()
    check(page, "tokens, actions menu open", found)
    page.keyboard.press("Escape")
    choose(page, "Local scripts", "Revoke")
    expect(page.get_by_role("dialog")).to_be_visible()
    check(page, "tokens, revoke dialog open", found)
    page.get_by_role("dialog").get_by_role("button", name="Cancel").click()

    page.get_by_role("button", name="Generate token").click()
    check(page, "new token", found)
    page.get_by_label("Name", exact=True).fill("Checked by axe")
    page.get_by_label("Name", exact=True).press("Enter")
    expect(page.locator("[data-token-value]")).to_be_visible()
    check(page, "tokens, value shown", found)

    base = "/settings/api-tokens"
    deploys = tokens["deploys"].id
    for what, url in [
        ("token detail", f"{base}/{deploys}"), ("edit", f"{base}/{deploys}/edit"),
        ("regenerate page", f"{base}/{deploys}/regenerate"), ("revoke page", f"{base}/{deploys}/revoke"),
        ("end grace page", f"{base}/{deploys}/end-grace"), ("deleted tab", f"{base}?tab=deleted"),
        ("no match", f"{base}?name=nothing"), ("bulk revoke", f"{base}/bulk-revoke"),
        ("bulk revoke preview", f"{base}/bulk-revoke?all=1"),
        ("notifications", "/settings/notifications"), ("members", "/settings/members"),
        ("partners", "/settings/partners"), ("webhooks", "/settings/webhooks"),
        ("organization", "/settings/organization"), ("audit log", "/settings/audit"),
        ("webhook delivery log", f"/settings/webhooks/{acme['webhook']}"),
        ("member removal page", f"/settings/members/{acme['people']['editor'].id}/remove"),
        ("narrow page", f"{base}/{deploys}/narrow"),
        ("not found", "/settings/api-tokens/tok_0000000000000000"),
    ]:
        page.goto(url)
        check(page, what, found)

    page.goto("/settings/organization")
    page.get_by_label("Plan", exact=True).select_option("none")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("heading", name="Stop every token of Acme?")).to_be_visible()
    check(page, "organization, stop confirmation", found)
    page.goto(f"{base}/{deploys}")
    page.get_by_role("button", name="Revoke").click()
    expect(page.get_by_role("dialog")).to_be_visible()
    check(page, "token detail, revoke dialog open", found)
    assert found == {}


def test_every_hub_page_and_the_signed_out_pages_have_no_serious_violation(page, acme):
    found: dict[str, list[str]] = {}
    page.goto("/login")
    check(page, "sign in", found)
    page.get_by_role("button", name="Sign in").click()
    check(page, "sign in, errors", found)
    page.goto("/no-such-page")
    check(page, "not found, signed out", found)

    sign_in(page, acme["people"]["partner"])
    globex = acme["tokens"]["globex"].id
    for what, url in [("hub tokens", "/hub/api-tokens"), ("hub new token", "/hub/api-tokens/new"),
                      ("hub token detail", f"/hub/api-tokens/{globex}"),
                      ("hub notifications", "/hub/notifications"), ("hub, a portal page", "/settings/api-tokens")]:
        page.goto(url)
        check(page, what, found)
    page.get_by_role("button", name="Sign out").click()

    page.goto("/login")
    page.get_by_label("Email").fill(acme["people"]["viewer"].email)
    page.get_by_label("Password").fill(acme["people"]["viewer"].password)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("button", name="Sign out")).to_be_visible()
    check(page, "a viewer's home", found)
    assert found == {}


@pytest.mark.parametrize("width", [1280, 390])
def test_the_list_and_its_dialog_at_each_width_have_no_serious_violation(browser, server, acme, screenshot, width):
    context = browser.new_context(base_url=server.url, viewport={"width": width, "height": 844})
    try:
        page = context.new_page()
        sign_in(page, acme["people"]["owner"])
        found: dict[str, list[str]] = {}
        check(page, f"tokens at {width} px", found)
        choose(page, "CI deploys", "Regenerate")
        expect(page.get_by_role("dialog")).to_be_visible()
        check(page, f"regenerate dialog at {width} px", found)
        screenshot(page, f"a11y-regenerate-dialog-{width}")
        assert found == {}
    finally:
        context.close()
