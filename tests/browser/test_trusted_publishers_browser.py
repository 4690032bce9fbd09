"""Settings → Trusted publishers in a real browser: an owner adds a publisher for a local OIDC
issuer, a "CI job" exchanges its identity token with the server, the minted token shows its
marker without Edit or Regenerate, and deleting the publisher (through the dialog, which says
what it revokes) stops that token."""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.request
import uuid

import jwt
import pytest
from playwright.sync_api import expect

from tests.browser.helpers import sign_in_exact_heading
from tests.publishers.issuer import LocalIssuer, new_rsa_key

pytestmark = pytest.mark.browser


@pytest.fixture
def oidc_issuer():
    issuer = LocalIssuer({"rsa-1": new_rsa_key()})
    yield issuer
    issuer.close()


@pytest.fixture
def server(live_server, oidc_issuer):
    return live_server(workers=2, KEYWARD_OIDC_ISSUERS=oidc_issuer.url)


def identity_token(issuer: LocalIssuer) -> str:
    """A GitHub-like job token, timed by the real clock (the server runs in its own process)."""
    now = int(time.time())
    claims = {"iss": issuer.url, "aud": "keyward", "sub": "repo:acme/widgets:ref:refs/heads/main",
              "repository": "acme/widgets", "ref": "refs/heads/main", "jti": str(uuid.uuid4()),
              "iat": now, "nbf": now, "exp": now + 300}
    return jwt.encode(claims, issuer.keys["rsa-1"], algorithm="RS256", headers={"kid": "rsa-1"})


def call(url: str, *, body: dict | None = None, secret: str | None = None) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=json.dumps(body).encode() if body is not None else None,
                                     headers={"Content-Type": "application/json",
                                              **({"Authorization": f"Bearer {secret}"} if secret else {})})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_owner_adds_a_publisher_whose_token_is_marked_and_revoked_with_it(page, make, server, oidc_issuer,
                                                                          screenshot):
    org = make.org("business", name="Acme")
    owner = make.member(org, "owner", email="owen@acme.test")
    sign_in_exact_heading(page, owner)

    page.get_by_role("navigation", name="Main").get_by_role("link", name="Trusted publishers").click()
    expect(page.get_by_role("heading", name="Trusted publishers", exact=True)).to_be_visible()
    page.get_by_text("Add trusted publisher").first.click()
    page.get_by_label("Name").fill("Deploy from main")
    page.get_by_label("Issuer").select_option(oidc_issuer.url)
    expect(page.get_by_label("Audience")).to_have_value("keyward")
    page.get_by_label("Claim 1").fill("repository")
    page.get_by_label("Value 1").fill("acme/widgets")
    page.get_by_label("Claim 2").fill("ref")
    page.get_by_label("Value 2").fill("refs/heads/main")
    expect(page.get_by_label("Claim 3")).to_be_visible()
    expect(page.get_by_label("documents read", exact=True)).to_be_checked()
    page.get_by_label("projects read", exact=True).check()
    expect(page.get_by_label("Lifetime (minutes)")).to_have_value("15")
    screenshot(page, "trusted-publisher-form")
    page.get_by_role("button", name="Add trusted publisher").last.click()

    expect(page.get_by_text("Added the trusted publisher “Deploy from main”")).to_be_visible()
    row = page.locator("tr", has_text="Deploy from main")
    expect(row.get_by_text("repository = acme/widgets")).to_be_visible()
    expect(row.get_by_text("0 live", exact=True)).to_be_visible()

    status, exchanged = call(server.url + "/api/v1/oidc/exchange", body={"token": identity_token(oidc_issuer)})
    assert status == 201, exchanged
    secret = exchanged["secret"]
    assert call(server.url + "/api/v1/documents", secret=secret)[0] == 200

    page.get_by_role("navigation", name="Main").get_by_role("link", name="API Tokens").click()
    token_row = page.locator(f"#token-{exchanged['token']['id']}")
    expect(token_row.get_by_text("Trusted publisher: Deploy from main")).to_be_visible()
    token_row.get_by_role("button", name="Actions for Deploy from main").click()
    expect(token_row.get_by_role("button", name="Revoke", exact=True)).to_be_visible()
    expect(token_row.get_by_role("button", name="Regenerate", exact=True)).to_have_count(0)
    expect(token_row.get_by_role("button", name="Edit", exact=True)).to_have_count(0)
    screenshot(page, "trusted-publisher-token-row")

    page.get_by_role("navigation", name="Main").get_by_role("link", name="Trusted publishers").click()
    row = page.locator("tr", has_text="Deploy from main")
    expect(row.get_by_text("1 live", exact=True)).to_be_visible()
    row.get_by_role("button", name="Delete").click()
    dialog = page.get_by_role("dialog", name="Delete “Deploy from main”?")
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text("its 1 live token is revoked at once")
    screenshot(page, "trusted-publisher-delete-dialog")
    dialog.get_by_role("button", name="Delete publisher").click()

    expect(page.get_by_text(re.compile("revoked its 1 live token"))).to_be_visible()
    expect(page.get_by_role("heading", name="No trusted publishers yet")).to_be_visible()
    status, refused = call(server.url + "/api/v1/documents", secret=secret)
    assert status == 401 and refused["error"]["code"] == "invalid_api_key"
