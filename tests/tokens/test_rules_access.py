"""Access rules that had no test of their own: roles above one's own, other organizations' ids,
unknown labels, the `next` redirect after sign-in, switching organization, the generic 500.

Each test names the rule it holds; each was checked by breaking that rule in the code and seeing
the test fail.
"""

from __future__ import annotations

import logging

import pytest
from sqlalchemy import select

from tests.conftest import bearer, csrf_from
from tests.pages import TOKENS, csrf, signed_in

MEMBERS = "/settings/members"
PARTNERS = "/settings/partners"


def role_of(make, membership_id: int) -> str:
    from shared.core.extensions import db
    from shared.models import Membership

    return make.run(lambda: db.session.get(Membership, membership_id).role)


def live_members(make, org) -> list[str]:
    from shared.core.extensions import db
    from shared.models import Membership, User

    return make.run(lambda: sorted(db.session.scalars(
        select(User.email).join(Membership, Membership.user_id == User.id)
        .where(Membership.organization_id == org.id, Membership.removed_at.is_(None)))))


# --------------------------------------------------------------------------- roles above one's own


def test_an_admin_cannot_give_a_member_a_role_above_their_own(client, make):
    org = make.org()
    make.member(org, "owner")
    admin, editor = make.member(org, "admin"), make.member(org, "editor")
    signed_in(client, admin)
    token = csrf(client, MEMBERS)
    refused = client.post(f"{MEMBERS}/{editor.id}/role", data={"csrf_token": token, "role": "owner"})
    assert refused.status_code == 403
    assert "more rights than your own" in refused.get_data(as_text=True)
    assert role_of(make, editor.id) == "editor"
    assert make.audit("member.role_changed") == []
    # Within the admin's own rights the same change goes through: the refusal was about the role.
    allowed = client.post(f"{MEMBERS}/{editor.id}/role", data={"csrf_token": token, "role": "admin"})
    assert allowed.status_code == 302 and role_of(make, editor.id) == "admin"


def test_an_admin_cannot_add_a_member_with_a_role_above_their_own(client, make):
    org = make.org()
    admin = make.member(org, "admin")
    signed_in(client, admin)
    response = client.post(MEMBERS, data={"csrf_token": csrf(client, MEMBERS), "email": "boss@example.test",
                                          "role": "owner", "password": "long enough password"})
    assert response.status_code == 422
    assert "more rights than your own" in response.get_data(as_text=True)
    assert "boss@example.test" not in live_members(make, org)


def test_the_roles_an_admin_is_offered_stop_at_their_own(make, app):
    from shared.audit.record import Actor
    from shared.core.extensions import db
    from shared.identity import members
    from shared.models import Membership

    org = make.org()
    admin = make.member(org, "admin")
    with app.app_context():
        offered = members.assignable_roles(Actor(membership=db.session.get(Membership, admin.id)))
    assert "owner" not in offered and {"admin", "editor", "viewer", "partner_admin"} <= set(offered)


# --------------------------------------------------------------------------- other organizations' ids


def test_another_organizations_member_id_answers_404_and_changes_nothing(client, make):
    org, other = make.org(), make.org()
    owner = make.member(org, "owner")
    stranger = make.member(other, "editor")
    signed_in(client, owner)
    token = csrf(client, MEMBERS)
    assert client.get(f"{MEMBERS}/{stranger.id}/remove").status_code == 404
    assert client.post(f"{MEMBERS}/{stranger.id}/role", data={"csrf_token": token, "role": "viewer"}).status_code == 404
    assert client.post(f"{MEMBERS}/{stranger.id}/remove", data={"csrf_token": token}).status_code == 404
    assert role_of(make, stranger.id) == "editor"
    assert stranger.email in live_members(make, other)


def test_another_organizations_partner_id_answers_404(client, make):
    org, other = make.org(), make.org()
    owner = make.member(org, "owner")
    make.partner(org, "Ours")  # so the form offers a partner field to mark
    foreign = make.partner(other, "Foreign")
    signed_in(client, owner)
    token = csrf(client, PARTNERS)
    added = client.post(f"{PARTNERS}/{foreign}/users", data={
        "csrf_token": token, "email": "spy@example.test", "role": "partner_admin", "password": "long enough password"})
    assert added.status_code == 404
    # A member added with another organization's partner id is refused, the field marked.
    member = client.post(MEMBERS, data={"csrf_token": csrf(client, MEMBERS), "email": "spy@example.test",
                                        "role": "partner_admin", "partner_id": str(foreign),
                                        "password": "long enough password"})
    assert member.status_code == 422
    assert 'name="partner_id" aria-invalid="true"' in member.get_data(as_text=True)
    assert "spy@example.test" not in live_members(make, org) + live_members(make, other)


# --------------------------------------------------------------------------- unknown labels


def test_unknown_labels_grant_nothing(client, make):
    org = make.org()
    member = make.member(org, "owner")
    issued = make.token(member, scopes=["documents", "documents:*", "billing-ish"],
                        permissions=["read", "admin", "write:all", "*"])
    doc = make.document(org, "kept")
    assert client.get("/api/v1/documents", headers=issued.headers).status_code == 200
    write = client.post("/api/v1/documents", headers=issued.headers, json={"title": "new"})
    assert write.status_code == 403 and write.get_json()["error"]["code"] == "insufficient_permission"
    delete = client.delete(f"/api/v1/documents/{doc}", headers=issued.headers)
    assert delete.status_code == 403
    billing = client.get("/api/v1/billing", headers=issued.headers)
    assert billing.status_code == 403 and billing.get_json()["error"]["code"] == "insufficient_scope"


def test_unknown_labels_are_no_escalation(client, make):
    """A token holding only known labels may hand out and manage tokens carrying unknown ones."""
    org = make.org()
    member = make.member(org, "maintainer")
    key = make.token(member, scopes=["tokens", "documents"], permissions=["read", "write"])
    created = client.post("/api/v1/tokens", headers=key.headers, json={
        "name": "labelled", "scopes": ["documents", "reports:export"], "permissions": ["read", "admin"]})
    assert created.status_code == 201, created.get_json()
    labelled = created.get_json()["token"]["id"]
    regenerated = client.post(f"/api/v1/tokens/{labelled}/regenerate", headers=key.headers)
    assert regenerated.status_code == 200, regenerated.get_json()


def test_effective_rights_ignore_unknown_labels(make, app):
    from shared.core.extensions import db
    from shared.models import ApiToken
    from shared.tokens import rights

    org = make.org()
    issued = make.token(make.member(org, "owner"), scopes=["documents", "admin"], permissions=["read", "root"])
    with app.app_context():
        token = db.session.scalars(select(ApiToken).where(ApiToken.public_id == issued.id)).one()
        assert rights.effective_pairs(token) == {("documents", "read")}
        allowed = [(row["scope"], row["method"]) for row in rights.rights_table(token) if row["allowed"]]
    assert allowed == [("documents", "GET")]


# --------------------------------------------------------------------------- signing in


def test_a_safe_next_is_where_sign_in_lands(client, make):
    org = make.org()
    owner = make.member(org, "owner")
    page = client.get(f"/login?next={MEMBERS}%3Fq%3D1")
    response = client.post(f"/login?next={MEMBERS}%3Fq%3D1", data={
        "email": owner.email, "password": owner.password, "csrf_token": csrf_from(page.get_data(as_text=True))})
    assert response.status_code == 302
    assert response.headers["Location"] == f"{MEMBERS}?q=1"


def test_switching_to_an_organization_one_does_not_belong_to_changes_nothing(client, make):
    first, second, foreign = make.org(name="First"), make.org(name="Second"), make.org(name="Foreign")
    member = make.member(first, "owner")
    make.member(second, "owner", email=member.email)
    foreign_token = make.token(make.member(foreign, "owner"))
    second_token = make.token(make.member(second, "admin"))
    signed_in(client, member)
    token = csrf(client)
    client.post("/switch-organization", data={"csrf_token": token, "organization_id": second.id})
    assert second_token.id in client.get(TOKENS).get_data(as_text=True)  # working in Second now

    response = client.post("/switch-organization", data={"csrf_token": token, "organization_id": foreign.id})
    assert response.status_code == 302
    page = client.get(TOKENS).get_data(as_text=True)
    assert foreign_token.id not in page
    assert second_token.id in page  # still in Second: neither Foreign nor back to First
    with client.session_transaction() as session:
        assert session["org_id"] == second.id


# --------------------------------------------------------------------------- the generic 500


@pytest.fixture
def failing_app(app):
    """The app with one view that fails the way a bug does (registered before any request)."""

    def boom():
        raise RuntimeError("a bug with kw_0123 in its message")

    app.add_url_rule("/api/v1/test-boom", "api_test_boom", boom)
    app.add_url_rule("/test-boom", "test_boom", boom)
    return app


def test_an_unexpected_error_is_a_designed_500_and_is_logged(failing_app, caplog):
    client = failing_app.test_client()
    with caplog.at_level(logging.ERROR, logger="keyward"):
        api = client.get("/api/v1/test-boom", headers=bearer("kw_anything"))
        page = client.get("/test-boom")
        htmx = client.get("/test-boom", headers={"HX-Request": "true"})
    assert api.status_code == 500
    error = api.get_json()["error"]
    assert (error["code"], error["message"]) == ("internal_error", "Something went wrong on our side")
    assert error["request_id"] == api.headers["X-Request-Id"]  # the id to quote to support
    assert page.status_code == 500 and page.mimetype == "text/html"
    body = page.get_data(as_text=True)
    assert "Something went wrong on our side." in body and "RuntimeError" not in body and "kw_0123" not in body
    assert htmx.status_code == 500 and htmx.mimetype == "text/plain"
    assert htmx.get_data(as_text=True) == "Something went wrong on our side."
    logged = [r for r in caplog.records if r.name == "keyward" and r.exc_info]
    assert [r.getMessage() for r in logged] == ["unhandled error on GET /api/v1/test-boom",
                                               "unhandled error on GET /test-boom", "unhandled error on GET /test-boom"]
