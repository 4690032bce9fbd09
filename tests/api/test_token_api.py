"""The token API: create, list, read, update, deactivate, reactivate, regenerate, revoke."""

from __future__ import annotations

import logging

import pytest

from shared.core.extensions import db
from shared.identity import accounts
from shared.models import Membership
from tests.conftest import bearer

ALL = ["read", "write", "delete"]
TOKEN_FIELDS = {"id", "name", "description", "type", "project_id", "rights", "permissions", "scopes",
                "ip_allowlist", "masked", "status", "is_active", "created_at", "expires_at", "last_used_at",
                "last_used_ip",
                "usage_count", "documents_processed", "revoked_at", "created_by",
                # the grace end of the previous value; why a revoked token was revoked.
                "previous_expires_at", "revoked_reason",
                # a canary, and how often it tripped.
                "canary", "canary_trips"}


@pytest.fixture
def org(make):
    return make.org()


@pytest.fixture
def admin(make, org):
    return make.member(org, "admin")


@pytest.fixture
def admin_key(make, admin):
    return make.token(admin, scopes=["tokens", "documents", "projects"], permissions=ALL, expires_at=None)


def create(client, key, **payload):
    payload.setdefault("name", "made by api")
    payload.setdefault("scopes", ["documents"])
    payload.setdefault("permissions", ["read"])
    return client.post("/api/v1/tokens", headers=key.headers, json=payload)


def test_create_answers_token_and_secret_once_with_no_store(client, admin_key):
    response = create(client, admin_key, name="Reporting", description="nightly", expires_in_days=30)
    assert response.status_code == 201
    assert response.headers["Cache-Control"] == "no-store"
    body = response.get_json()
    assert set(body) == {"token", "secret"}
    assert set(body["token"]) == TOKEN_FIELDS
    assert body["token"]["name"] == "Reporting" and body["token"]["status"] == "active"
    assert body["token"]["masked"].endswith(body["secret"][-4:])
    new = body["secret"]
    assert client.get("/api/v1/me", headers=bearer(new)).status_code == 200
    detail = client.get(f"/api/v1/tokens/{body['token']['id']}", headers=admin_key.headers)
    assert detail.status_code == 200 and new not in detail.get_data(as_text=True)
    listing = client.get("/api/v1/tokens", headers=admin_key.headers).get_data(as_text=True)
    assert new not in listing


def test_create_defaults_to_one_year_and_null_means_never(client, admin_key, clock):
    default = create(client, admin_key).get_json()["token"]
    assert default["expires_at"] == "2027-11-23T12:00:00Z"
    never = create(client, admin_key, expires_at=None).get_json()["token"]
    assert never["expires_at"] is None
    dated = create(client, admin_key, expires_at="2027-01-31").get_json()["token"]
    assert dated["expires_at"] == "2027-01-31T23:59:59Z"


def test_create_is_audited_without_secret(client, admin_key, make):
    body = create(client, admin_key, name="Audited").get_json()
    events = make.audit("token.created")
    assert events[-1].target_id == body["token"]["id"]
    assert events[-1].actor_token_id is not None
    assert body["secret"] not in str(events[-1].details)


@pytest.mark.parametrize("payload, field", [
    ({"name": ""}, "name"),
    ({"name": "   "}, "name"),
    ({"name": "x" * 101}, "name"),
    ({"name": "bad\x07name"}, "name"),
    ({"name": 5}, "name"),
    ({"description": "d" * 501}, "description"),
    ({"permissions": []}, "permissions"),
    ({"scopes": []}, "scopes"),
    ({"scopes": "documents"}, "scopes"),  # the API wants a list
    ({"scopes": [1, 2]}, "scopes"),
    ({"permissions": ["has space"]}, "permissions"),
    ({"type": "galaxy"}, "type"),
    ({"type": "project"}, "project_id"),
    ({"type": "project", "project_id": 999999}, "project_id"),
    ({"project_id": "one"}, "project_id"),
    ({"expires_in_days": 0}, "expires_in_days"),
    ({"expires_in_days": "ten"}, "expires_in_days"),
    ({"expires_in_days": True}, "expires_in_days"),
    ({"expires_at": "yesterday"}, "expires_at"),
    ({"expires_at": "2001-01-01"}, "expires_at"),
    ({"ip_allowlist": ["not-an-ip"]}, "ip_allowlist"),
    ({"ip_allowlist": ["10.0.0.0/33"]}, "ip_allowlist"),
    ({"ip_allowlist": [f"10.0.0.{i}" for i in range(51)]}, "ip_allowlist"),
    ({"colour": "blue"}, "colour"),
])
def test_bad_input_answers_400_with_field_errors_and_writes_nothing(client, admin_key, make, payload, field):
    before = len(make.audit("token.created"))
    response = create(client, admin_key, **payload)
    assert response.status_code == 400, response.get_json()
    error = response.get_json()["error"]
    assert error["code"] == "invalid_request"
    assert field in error["fields"]
    assert len(make.audit("token.created")) == before


@pytest.mark.parametrize("body", ["not json", "[1, 2]", "null", '"text"', "{"])
def test_non_object_bodies_are_400(client, admin_key, body):
    response = client.post("/api/v1/tokens", headers={**admin_key.headers, "Content-Type": "application/json"},
                           data=body)
    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "invalid_request"


def test_unknown_labels_are_kept_and_grant_nothing(client, admin_key):
    body = create(client, admin_key, scopes=["documents", "reports:export"], permissions=["read", "admin"]).get_json()
    assert body["token"]["scopes"] == ["documents", "reports:export"]
    assert body["token"]["permissions"] == ["read", "admin"]


def test_list_is_newest_first_with_filters_and_pagination(client, admin_key, make, admin, clock):
    for i in range(5):
        clock.advance(minutes=1)
        make.token(admin, name=f"batch {i}", type="organization")
    response = client.get("/api/v1/tokens?per_page=2&page=1&name=BATCH", headers=admin_key.headers)
    body = response.get_json()
    assert body["total"] == 5 and body["page"] == 1 and body["per_page"] == 2
    assert [t["name"] for t in body["items"]] == ["batch 4", "batch 3"]
    typed = client.get("/api/v1/tokens?type=organization", headers=admin_key.headers).get_json()
    assert typed["total"] == 5


@pytest.mark.parametrize("query, field", [
    ("per_page=101", "per_page"), ("per_page=0", "per_page"), ("page=0", "page"), ("page=x", "page"),
    ("type=weird", "type"), ("status=gone", "status"), ("project_id=abc", "project_id"), ("bogus=1", "bogus"),
])
def test_bad_list_filters_answer_400(client, admin_key, query, field):
    response = client.get(f"/api/v1/tokens?{query}", headers=admin_key.headers)
    assert response.status_code == 400
    assert field in response.get_json()["error"]["fields"]


def test_update_changes_fields_but_not_the_secret(client, admin_key, make, admin):
    target = make.token(admin, name="old")
    response = client.patch(f"/api/v1/tokens/{target.id}", headers=admin_key.headers,
                            json={"name": "new", "description": "d", "scopes": ["documents", "projects"],
                                  "ip_allowlist": ["192.0.2.0/24"], "expires_in_days": 10})
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["name"] == "new" and body["scopes"] == ["documents", "projects"]
    assert body["ip_allowlist"] == ["192.0.2.0/24"]
    assert "secret" not in body
    assert client.get("/api/v1/me", headers=target.headers,
                      environ_base={"REMOTE_ADDR": "192.0.2.9"}).status_code == 200
    changes = make.audit("token.updated")[-1].details["changes"]
    assert changes["name"] == {"from": "old", "to": "new"}


def test_update_cannot_change_type(client, admin_key, make, admin):
    target = make.token(admin)
    response = client.patch(f"/api/v1/tokens/{target.id}", headers=admin_key.headers, json={"type": "organization"})
    assert response.status_code == 400
    assert set(response.get_json()["error"]["fields"]) == {"type"}
    assert make.get_token(target.id).type == "personal"
    assert make.audit("token.updated") == []


def test_regenerate_invalidates_old_value(client, admin_key, make, admin):
    target = make.token(admin)
    response = client.post(f"/api/v1/tokens/{target.id}/regenerate", headers=admin_key.headers)
    assert response.status_code == 200 and response.headers["Cache-Control"] == "no-store"
    new_secret = response.get_json()["secret"]
    assert new_secret != target.secret
    assert client.get("/api/v1/me", headers=target.headers).status_code == 401
    me = client.get("/api/v1/me", headers=bearer(new_secret)).get_json()
    assert me["token"]["id"] == target.id
    assert make.audit("token.regenerated")[-1].target_id == target.id


def test_revoke_is_final_and_listed_as_revoked(client, admin_key, make, admin):
    target = make.token(admin)
    response = client.delete(f"/api/v1/tokens/{target.id}", headers=admin_key.headers)
    assert response.status_code == 200 and response.get_json()["status"] == "revoked"
    assert client.get("/api/v1/me", headers=target.headers).status_code == 401
    for method, path in (("post", "reactivate"), ("post", "regenerate"), ("post", "deactivate")):
        again = getattr(client, method)(f"/api/v1/tokens/{target.id}/{path}", headers=admin_key.headers)
        assert again.status_code == 409
    patch = client.patch(f"/api/v1/tokens/{target.id}", headers=admin_key.headers, json={"is_active": True})
    assert patch.status_code == 409
    assert client.delete(f"/api/v1/tokens/{target.id}", headers=admin_key.headers).status_code == 409
    revoked = client.get("/api/v1/tokens?status=revoked", headers=admin_key.headers).get_json()
    assert [t["id"] for t in revoked["items"]] == [target.id]
    active = client.get("/api/v1/tokens", headers=admin_key.headers).get_json()
    assert target.id not in [t["id"] for t in active["items"]]


def test_other_orgs_tokens_answer_404(client, make, admin_key):
    stranger = make.member(make.org(), "owner")
    foreign = make.token(stranger)
    for method, path in (("get", ""), ("patch", ""), ("delete", ""), ("post", "/regenerate"),
                         ("post", "/deactivate"), ("post", "/reactivate")):
        response = getattr(client, method)(f"/api/v1/tokens/{foreign.id}{path}", headers=admin_key.headers,
                                           json={"name": "x"} if method == "patch" else None)
        assert response.status_code == 404, (method, path)
        assert response.get_json()["error"]["code"] == "not_found"
    assert client.get("/api/v1/me", headers=foreign.headers).status_code == 200  # untouched


def test_member_sees_only_own_tokens_and_admin_sees_all(client, make, org, admin_key):
    alice, bob = make.member(org, "editor"), make.member(org, "editor")
    alice_key = make.token(alice, scopes=["tokens"], permissions=["read", "write"])
    bob_token = make.token(bob)
    mine = client.get("/api/v1/tokens", headers=alice_key.headers).get_json()
    assert [t["id"] for t in mine["items"]] == [alice_key.id]
    assert client.get(f"/api/v1/tokens/{bob_token.id}", headers=alice_key.headers).status_code == 404
    everyone = client.get("/api/v1/tokens", headers=admin_key.headers).get_json()
    assert {alice_key.id, bob_token.id} <= {t["id"] for t in everyone["items"]}


def test_security_manager_deactivates_and_revokes_but_cannot_edit_others(client, make, org):
    security = make.member(org, "security_manager")
    key = make.token(security, scopes=["tokens"], permissions=ALL)
    victim = make.token(make.member(org, "editor"))
    assert client.post(f"/api/v1/tokens/{victim.id}/deactivate", headers=key.headers).status_code == 200
    edit = client.patch(f"/api/v1/tokens/{victim.id}", headers=key.headers, json={"name": "mine now"})
    assert edit.status_code == 403
    regen = client.post(f"/api/v1/tokens/{victim.id}/regenerate", headers=key.headers)
    assert regen.status_code == 403
    assert client.delete(f"/api/v1/tokens/{victim.id}", headers=key.headers).status_code == 200


def test_only_owners_and_admins_create_shared_tokens(client, make, org):
    project_id = make.project(org)
    editor_key = make.token(make.member(org, "editor"), scopes=["tokens", "documents"], permissions=["read", "write"])
    for kind in ("organization", "project"):
        response = create(client, editor_key, type=kind, project_id=project_id if kind == "project" else None)
        assert response.status_code == 400 and "type" in response.get_json()["error"]["fields"]
    owner_key = make.token(make.member(org, "owner"), scopes=["tokens", "documents"], permissions=ALL)
    made = create(client, owner_key, type="project", project_id=project_id).get_json()["token"]
    assert made["type"] == "project" and made["project_id"] == project_id


def test_project_of_another_org_is_refused(client, make, admin_key):
    foreign_project = make.project(make.org())
    response = create(client, admin_key, type="project", project_id=foreign_project)
    assert response.status_code == 400 and "project_id" in response.get_json()["error"]["fields"]


# ------------------------------------------------------------------ no escalation


def test_token_cannot_create_beyond_its_permissions_or_scopes(client, make, org):
    maintainer = make.member(org, "maintainer")
    key = make.token(maintainer, scopes=["tokens", "documents"], permissions=["read", "write"])
    for payload, field in (({"permissions": ["read", "delete"]}, "permissions"),
                           ({"scopes": ["projects"]}, "scopes"),
                           ({"scopes": ["tokens", "analytics"]}, "scopes")):
        response = create(client, key, **payload)
        assert response.status_code == 400, payload
        assert field in response.get_json()["error"]["fields"]
    assert create(client, key, permissions=["read", "write"], scopes=["documents", "tokens"]).status_code == 201


def test_role_limits_what_a_token_can_grant(client, make, org):
    # an owner downgraded to editor keeps a token with `delete`, but it cannot pass it on
    owner = make.member(org, "owner")
    key = make.token(owner, scopes=["tokens", "documents"], permissions=ALL)
    make.run(lambda: accounts.set_role(db.session.get(Membership, owner.id), "editor"))
    response = create(client, key, permissions=["read", "delete"])
    assert response.status_code == 400
    assert set(response.get_json()["error"]["fields"]) == {"permissions"}
    assert "delete" in response.get_json()["error"]["fields"]["permissions"]
    assert create(client, key, permissions=["read", "write"]).status_code == 201  # within the role: fine


def test_token_cannot_outlive_or_widen_allowlist(client, make, org, clock):
    member = make.member(org, "admin")
    key = make.token(member, scopes=["tokens", "documents"], permissions=ALL, expires_in_days=30,
                     ip_allowlist=["10.0.0.0/8"])
    env = {"REMOTE_ADDR": "10.1.1.1"}
    longer = client.post("/api/v1/tokens", headers=key.headers, environ_base=env,
                         json={"name": "x", "scopes": ["documents"], "permissions": ["read"],
                               "expires_in_days": 60, "ip_allowlist": ["10.1.0.0/16"]})
    assert longer.status_code == 400
    assert longer.get_json()["error"]["fields"] == {"expires_at": "A token cannot outlive the token that creates it"}
    never = client.post("/api/v1/tokens", headers=key.headers, environ_base=env,
                        json={"name": "x", "scopes": ["documents"], "permissions": ["read"], "expires_at": None,
                              "ip_allowlist": ["10.1.0.0/16"]})
    assert never.status_code == 400
    wider = client.post("/api/v1/tokens", headers=key.headers, environ_base=env,
                        json={"name": "x", "scopes": ["documents"], "permissions": ["read"], "expires_in_days": 7,
                              "ip_allowlist": ["0.0.0.0/0"]})
    assert wider.status_code == 400 and "ip_allowlist" in wider.get_json()["error"]["fields"]
    none = client.post("/api/v1/tokens", headers=key.headers, environ_base=env,
                       json={"name": "x", "scopes": ["documents"], "permissions": ["read"], "expires_in_days": 7})
    assert none.status_code == 400
    ok = client.post("/api/v1/tokens", headers=key.headers, environ_base=env,
                     json={"name": "x", "scopes": ["documents"], "permissions": ["read"], "expires_in_days": 7,
                           "ip_allowlist": ["10.1.0.0/16"]})
    assert ok.status_code == 201


def test_project_token_only_manages_its_project(client, make, org):
    owner = make.member(org, "owner")
    project, other = make.project(org), make.project(org)
    key = make.token(owner, type="project", project_id=project, scopes=["tokens", "documents"], permissions=ALL)
    assert create(client, key).status_code == 400  # personal would reach every project
    assert create(client, key, type="project", project_id=other).status_code == 400
    assert create(client, key, type="project", project_id=project).status_code == 201


def test_token_cannot_widen_a_token_by_update(client, make, org):
    member = make.member(org, "maintainer")
    key = make.token(member, scopes=["tokens"], permissions=["read", "write"])
    target = make.token(member, scopes=["documents"], permissions=["read"])
    widened = client.patch(f"/api/v1/tokens/{target.id}", headers=key.headers, json={"permissions": ["delete"]})
    assert widened.status_code == 400
    renamed = client.patch(f"/api/v1/tokens/{target.id}", headers=key.headers, json={"name": "renamed"})
    assert renamed.status_code == 200


def test_token_cannot_regenerate_a_wider_token(client, make, org):
    member = make.member(org, "maintainer")
    key = make.token(member, scopes=["tokens"], permissions=["read", "write"])
    wider = make.token(member, scopes=["documents", "projects"], permissions=["read", "write", "delete"])
    response = client.post(f"/api/v1/tokens/{wider.id}/regenerate", headers=key.headers)
    assert response.status_code == 403
    assert client.get("/api/v1/me", headers=wider.headers).status_code == 200


# ------------------------------------------------------------------ plans and policy


def test_free_plan_limit_is_ten_live_tokens_per_member(client, make):
    member = make.member(make.org("free"), "editor")
    key = make.token(member, scopes=["tokens", "documents"], permissions=["read", "write"])
    for i in range(9):
        assert create(client, key, name=f"t{i}").status_code == 201
    refused = create(client, key, name="eleventh")
    assert refused.status_code == 409
    assert refused.get_json()["error"]["code"] == "token_limit_reached"
    # a deactivated token still counts; a revoked one does not
    victim = client.get("/api/v1/tokens?name=t0", headers=key.headers).get_json()["items"][0]["id"]
    assert client.post(f"/api/v1/tokens/{victim}/deactivate", headers=key.headers).status_code == 200
    assert create(client, key, name="still full").status_code == 409
    revoke_as_creator(make, member, victim)  # the editor's key lacks `delete`; the panel revokes too
    assert create(client, key, name="in the revoked one's place").status_code == 201
    assert create(client, key, name="full again").status_code == 409


def revoke_as_creator(make, member, public_id: str) -> None:
    from shared.audit.record import Actor
    from shared.tokens import access, lifecycle

    def revoke():
        actor = Actor(membership=db.session.get(Membership, member.id))
        lifecycle.revoke_token(actor, access.get_token_for(actor, public_id))

    make.run(revoke)
    assert make.get_token(public_id).revoked_at is not None


def test_plan_none_cannot_create_tokens(make, app):
    from shared.audit.record import Actor
    from shared.core.errors import PlanRequired
    from shared.core.extensions import db
    from shared.models import Membership
    from shared.tokens import lifecycle
    from shared.tokens import payload as token_payload

    member = make.member(make.org("none"), "owner")
    with app.app_context():
        data = token_payload.parse_token_payload({"name": "x", "scopes": ["documents"], "permissions": ["read"]},
                                          creating=True)
        with pytest.raises(PlanRequired) as info:
            lifecycle.create_token(Actor(membership=db.session.get(Membership, member.id)), data)
    assert "Choose a plan" in info.value.message


def set_policy(make, org, **fields):
    def apply():
        from shared.core.extensions import db
        from shared.models import Organization

        row = db.session.get(Organization, org.id)
        for key, value in fields.items():
            setattr(row, key, value)
        db.session.commit()

    make.run(apply)


def test_org_policy_caps_lifetime_forbids_never_restricts_scopes_requires_allowlist(client, make, org, admin_key):
    set_policy(make, org, policy_max_lifetime_days=90, policy_allow_no_expiry=False,
               policy_allowed_scopes=["documents", "tokens"], policy_require_allowlist=True)
    base = {"ip_allowlist": ["192.0.2.1"], "expires_in_days": 30}
    assert create(client, admin_key, **base).status_code == 201
    cases = [({**base, "expires_in_days": 91}, "expires_at"),
             ({**base, "expires_at": None, "expires_in_days": None}, "expires_at"),
             ({**base, "scopes": ["projects"]}, "scopes"),
             ({"expires_in_days": 30}, "ip_allowlist")]
    for payload, field in cases:
        response = create(client, admin_key, **payload)
        assert response.status_code == 400, payload
        assert set(response.get_json()["error"]["fields"]) == {field}, payload


def test_secret_never_logged(client, admin_key, make, admin, caplog):
    caplog.set_level(logging.DEBUG)
    # The capture works: a record of the app's loggers, at the lowest level, is seen below.
    logging.getLogger("keyward.tokens").debug("capture probe %s", admin_key.id)
    created = create(client, admin_key).get_json()
    regenerated = client.post(f"/api/v1/tokens/{created['token']['id']}/regenerate",
                              headers=admin_key.headers).get_json()
    client.get("/api/v1/me", headers=bearer(regenerated["secret"]))
    client.get("/api/v1/me", headers=bearer(created["secret"]))  # the dead one: a 401
    client.get("/api/v1/nowhere", headers=bearer(regenerated["secret"]))
    assert f"capture probe {admin_key.id}" in caplog.text
    for secret in (admin_key.secret, created["secret"], regenerated["secret"]):
        assert secret not in caplog.text
        assert secret[3:59] not in caplog.text
