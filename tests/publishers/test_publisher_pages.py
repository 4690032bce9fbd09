"""Settings → Trusted publishers without JavaScript (plain forms), and how minted tokens show in
the API Tokens list and on their page: the marker, and no Edit or Regenerate."""

from __future__ import annotations

import re

import pytest

from shared.models import ApiToken, TrustedPublisher
from tests.conftest import csrf_from, login

PAGE = "/settings/trusted-publishers"


def form_post(client, data: dict):
    html = client.get(PAGE).get_data(as_text=True)
    return client.post(PAGE, data={**data, "csrf_token": csrf_from(html)})


def add_form(issuer_url: str, **overrides) -> dict:
    return {"name": "Deploy from main", "issuer": issuer_url, "audience": "keyward",
            "condition_claim": ["repository", "ref", ""],
            "condition_value": ["acme/widgets", "refs/heads/main", ""],
            "rights": ["documents read", "projects read"], "project_id": "", "lifetime_minutes": "15",
            **overrides}


@pytest.fixture
def owner(client, make):
    member = make.member(make.org("business"), "owner")
    login(client, member)
    return member


def test_owner_sees_the_page_with_the_allowed_issuers_and_three_condition_rows(client, owner, oidc_issuer):
    html = client.get(PAGE).get_data(as_text=True)

    assert ">Trusted publishers</a>" in html and "No trusted publishers yet" in html
    for issuer in ("https://token.actions.githubusercontent.com", "https://gitlab.com", oidc_issuer.url):
        assert f'<option value="{issuer}"' in html
    for n in (1, 2, 3):
        assert f'for="tp-claim-{n}">Claim {n}<' in html and f'for="tp-value-{n}">Value {n}<' in html
    assert re.search(r'value="documents read"\s+checked', html)
    assert 'value="tokens read"' not in html
    assert '>documents read</label>' in html and '>analytics delete</label>' in html


@pytest.mark.parametrize("role", ["security_manager", "maintainer", "editor", "viewer"])
def test_other_roles_get_403_and_no_link(client, make, role):
    login(client, make.member(make.org("business"), role))
    assert client.get(PAGE).status_code == 403
    assert "Trusted publishers" not in client.get("/settings/notifications").get_data(as_text=True)


def test_adding_a_publisher_lists_it(client, owner, make, oidc_issuer):
    response = form_post(client, add_form(oidc_issuer.url))

    assert response.status_code == 302
    html = client.get(PAGE).get_data(as_text=True)
    assert "Deploy from main" in html
    assert "repository = acme/widgets" in html and "ref = refs/heads/main" in html
    assert "documents: read" in html and "projects: read" in html
    [publisher] = make.rows(TrustedPublisher)
    assert publisher.conditions == {"repository": "acme/widgets", "ref": "refs/heads/main"}
    assert publisher.rights == {"documents": ["read"], "projects": ["read"]}
    assert publisher.created_by_membership_id == owner.id


def test_bad_input_re_renders_with_messages_beside_the_fields(client, owner, make, oidc_issuer):
    response = form_post(client, add_form(oidc_issuer.url, name="", condition_claim=["", "", ""],
                                          condition_value=["", "", ""], lifetime_minutes="90",
                                          rights=["documents read", "projects write"]))

    assert response.status_code == 422
    html = response.get_data(as_text=True)
    assert 'id="tp-name-error"' in html and "Add at least one claim condition" in html
    assert "from 5 to 60 minutes" in html
    assert re.search(r'value="projects write"\s+checked', html)  # what was ticked stays ticked
    assert make.rows(TrustedPublisher) == []


def test_a_claim_listed_twice_is_refused(client, owner, make, oidc_issuer):
    response = form_post(client, add_form(oidc_issuer.url, condition_claim=["repository", "repository", ""],
                                          condition_value=["acme/a", "acme/b", ""]))
    assert response.status_code == 422 and "listed twice" in response.get_data(as_text=True)


def test_four_filled_conditions_come_back_with_an_empty_row(client, owner, oidc_issuer):
    claims = ["repository", "ref", "environment", "workflow"]
    response = form_post(client, add_form(oidc_issuer.url, name="", condition_claim=claims,
                                          condition_value=["a/b", "refs/heads/main", "prod", "deploy"]))
    assert 'for="tp-claim-5">Claim 5<' in response.get_data(as_text=True)


def test_delete_dialog_says_how_many_live_tokens_it_revokes_and_does(client, owner, make, app, mint,
                                                                      oidc_issuer):
    form_post(client, add_form(oidc_issuer.url))
    api = app.test_client()
    for _ in range(2):
        assert api.post("/api/v1/oidc/exchange", json={"token": mint()}).status_code == 201

    html = client.get(PAGE).get_data(as_text=True)
    assert "its 2 live tokens are revoked at once" in html
    [publisher] = make.rows(TrustedPublisher)
    response = client.post(f"{PAGE}/{publisher.public_id}/delete", data={"csrf_token": csrf_from(html)})

    assert response.status_code == 302
    page = client.get(PAGE).get_data(as_text=True)
    assert "revoked its 2 live tokens" in page and "No trusted publishers yet" in page
    minted = make.rows(ApiToken, trusted_publisher_id=publisher.id)
    assert len(minted) == 2 and all(token.revoked_at is not None for token in minted)


def test_minted_tokens_are_marked_and_offer_no_edit_or_regenerate(client, owner, make, app, mint,
                                                                   oidc_issuer):
    form_post(client, add_form(oidc_issuer.url))
    minted = app.test_client().post("/api/v1/oidc/exchange", json={"token": mint()}).get_json()["token"]

    listing = client.get("/settings/api-tokens").get_data(as_text=True)
    row = re.search(rf'<tr id="token-{minted["id"]}".*?</tr>', listing, re.DOTALL).group(0)
    assert "Trusted publisher: Deploy from main" in row
    assert ">Edit<" not in row and ">Regenerate<" not in row
    assert ">Deactivate<" in row and ">Revoke<" in row

    detail = client.get(f"/settings/api-tokens/{minted['id']}").get_data(as_text=True)
    assert "Trusted publisher: Deploy from main" in detail and ">Edit<" not in detail
    edit = client.get(f"/settings/api-tokens/{minted['id']}/edit")
    assert edit.status_code == 409 and "trusted publisher" in edit.get_data(as_text=True)
